"""regularize_cost, regularize_cost_from_collection, l2_regularizer, l1_regularizer vs NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from layers import (
    Conv2D,
    FullyConnected,
    PredictTowerContext,
    TowerContext,
    l1_regularizer,
    l2_regularizer,
    regularize_cost,
    regularize_cost_from_collection,
)

tfv1 = tf.compat.v1


def _const_init(value):
    return tfv1.constant_initializer(np.asarray(value))


def test_l2_regularizer_is_scale_times_half_sum_of_squares(graph, make_session, rng):
    w = rng.standard_normal((3, 4))
    value = make_session().run(l2_regularizer(0.3)(tf.constant(w)))
    assert value == pytest.approx(0.3 * np.sum(w ** 2) / 2, rel=1e-10)


def test_l1_regularizer_is_scale_times_sum_of_abs(graph, make_session, rng):
    w = rng.standard_normal((3, 4))
    value = make_session().run(l1_regularizer(0.3)(tf.constant(w)))
    assert value == pytest.approx(0.3 * np.sum(np.abs(w)), rel=1e-10)


def _two_layer_model(rng):
    weights = {"conv/W": rng.standard_normal((3, 3, 2, 4)), "fc/W": rng.standard_normal((64, 3)),
               "conv/b": rng.standard_normal(4), "fc/b": rng.standard_normal(3)}
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 2])
    net = Conv2D("conv", x, 4, 3, kernel_initializer=_const_init(weights["conv/W"]),
                 bias_initializer=_const_init(weights["conv/b"]))
    FullyConnected("fc", net, 3, kernel_initializer=_const_init(weights["fc/W"]),
                   bias_initializer=_const_init(weights["fc/b"]))
    return weights


def test_regularize_cost_sums_over_matching_trainable_variables(graph, make_session, rng):
    with TowerContext("", is_training=True):
        weights = _two_layer_model(rng)
        cost = regularize_cost(".*/W", l2_regularizer(1e-4))
    assert cost.name == "regularize_cost:0"
    expected = 1e-4 * (np.sum(weights["conv/W"] ** 2) + np.sum(weights["fc/W"] ** 2)) / 2
    assert make_session().run(cost) == pytest.approx(expected, rel=1e-5)


def test_regularize_cost_custom_name_and_l1(graph, make_session, rng):
    with TowerContext("", is_training=True):
        weights = _two_layer_model(rng)
        cost = regularize_cost("fc/.*", l1_regularizer(0.01), name="fc_l1")
    assert cost.name == "fc_l1:0"
    expected = 0.01 * (np.abs(weights["fc/W"]).sum() + np.abs(weights["fc/b"]).sum())
    assert make_session().run(cost) == pytest.approx(expected, rel=1e-5)


def test_regularize_cost_in_a_predict_tower_is_a_constant_zero(graph, make_session, rng):
    with TowerContext("", is_training=False):
        _two_layer_model(rng)
        cost = regularize_cost(".*/W", l2_regularizer(1e-4))
    assert cost.name == "empty_regularize_cost:0"
    assert cost.op.type == "Const"
    assert make_session().run(cost) == 0


def test_regularize_cost_without_a_match_is_a_constant_zero(graph, make_session, rng):
    with TowerContext("", is_training=True):
        _two_layer_model(rng)
        cost = regularize_cost("nothing/.*", l2_regularizer(1e-4))
    assert cost.name == "empty_regularize_cost:0"
    assert make_session().run(cost) == 0


def test_regularize_cost_counts_only_variables_of_its_own_tower(graph, make_session, rng):
    outside = tfv1.get_variable("outside/W", initializer=tf.constant([10.0]))
    with TowerContext("", is_training=True):
        weights = _two_layer_model(rng)
        cost = regularize_cost(".*/W", l2_regularizer(1.0))
    expected = (np.sum(weights["conv/W"] ** 2) + np.sum(weights["fc/W"] ** 2)) / 2
    assert make_session().run(cost) == pytest.approx(expected, rel=1e-5)
    assert outside.name == "outside/W:0"


def test_regularize_cost_needs_a_tower_context(graph):
    with pytest.raises(RuntimeError, match=r"regularize_cost.*wrap the model in `with TowerContext"):
        regularize_cost(".*", l2_regularizer(1.0))


def test_regularize_cost_rejects_an_empty_regex(graph):
    with TowerContext("", is_training=True):
        with pytest.raises(ValueError, match="regularize_cost: regex.*''"):
            regularize_cost("", l2_regularizer(1.0))


def test_regularize_cost_from_collection_sums_layer_regularizers(graph, make_session, rng):
    w = rng.standard_normal((3, 2))
    with TowerContext("", is_training=True):
        FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 3]), 2, kernel_initializer=_const_init(w),
                       kernel_regularizer=l2_regularizer(0.5), bias_regularizer=l1_regularizer(2.0))
        cost = regularize_cost_from_collection()
    assert cost.name == "regularize_cost:0"
    assert make_session().run(cost) == pytest.approx(0.5 * np.sum(w ** 2) / 2, rel=1e-5)    # bias is zero


def test_regularize_cost_from_collection_in_a_predict_tower_is_zero(graph, make_session):
    with PredictTowerContext(""):
        FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 3]), 2, kernel_regularizer=l2_regularizer(0.5))
        cost = regularize_cost_from_collection()
    assert cost.name == "empty_regularize_cost:0"
    assert make_session().run(cost) == 0


def test_layer_regularizers_work_on_float64_variables(graph, make_session, rng):
    w = rng.standard_normal((3, 2))
    with TowerContext("", is_training=True):
        FullyConnected("fc", tfv1.placeholder(tf.float64, [None, 3]), 2, kernel_initializer=_const_init(w),
                       kernel_regularizer=l2_regularizer(0.5))
        cost = regularize_cost_from_collection()
    assert make_session().run(cost) == pytest.approx(0.5 * np.sum(w ** 2) / 2, rel=1e-6)

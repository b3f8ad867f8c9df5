"""Tower contexts: nesting, name conflicts, variable-scope rules, rebuilding for inference with reuse,
collections, and the error a tower-needing layer gives without one."""
import numpy as np
import pytest
import tensorflow as tf

from layers import (
    BatchNorm,
    Conv2D,
    FullyConnected,
    PredictTowerContext,
    TowerContext,
    TrainTowerContext,
    get_current_tower_context,
)

tfv1 = tf.compat.v1
UPDATE_OPS = tfv1.GraphKeys.UPDATE_OPS


def _model(x):
    net = Conv2D("conv", x, 3, 3, activation=tf.nn.relu)
    net = BatchNorm("bn", net)
    return FullyConnected("fc", net, 2)


def test_tower_context_factory_returns_train_or_predict(graph):
    train, pred = TowerContext("", is_training=True), TowerContext("", is_training=False)
    assert isinstance(train, TrainTowerContext) and train.is_training
    assert isinstance(pred, PredictTowerContext) and not pred.is_training


def test_tower_context_is_training_must_be_a_bool():
    with pytest.raises(TypeError, match="is_training must be a bool"):
        TowerContext("", is_training=1)


def test_current_tower_context_and_its_properties(graph):
    assert get_current_tower_context() is None
    with TrainTowerContext("tower0", index=0, total=2) as ctx:
        assert get_current_tower_context() is ctx
        assert (ctx.name, ctx.ns_name, ctx.vs_name) == ("tower0", "tower0", "")
        assert ctx.is_training and ctx.is_main_training_tower and ctx.has_own_variables
        assert (ctx.index, ctx.total) == (0, 2)
    assert get_current_tower_context() is None
    with PredictTowerContext("pred") as ctx:
        assert not ctx.is_training and not ctx.is_main_training_tower


def test_nesting_tower_contexts_raises(graph):
    with TowerContext("a", is_training=True):
        with pytest.raises(RuntimeError, match="Cannot nest TowerContext.*'b'.*'a'"):
            with TowerContext("b", is_training=False):
                pass


def test_reusing_a_tower_name_raises_name_conflict(graph):
    with TowerContext("tower0", is_training=True):
        tf.constant(1.0, name="c")
    with pytest.raises(ValueError, match="Name conflict.*'tower0'"):
        with PredictTowerContext("tower0"):
            pass


def test_tower_name_already_used_by_a_name_scope_is_a_conflict(graph):
    with tf.name_scope("pred"):
        tf.constant(1.0)
    with pytest.raises(ValueError, match="Name conflict"):
        with PredictTowerContext("pred"):
            pass


def test_tower_name_scope_prefixes_ops_but_not_variables(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 2])
    with TowerContext("tower0", is_training=True):
        y = Conv2D("conv", x, 3, 3)
    assert y.name == "tower0/conv/output:0"
    assert {v.name for v in tfv1.global_variables()} == {"conv/W:0", "conv/b:0"}


def test_vs_name_prefixes_variables_too(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 2])
    with TrainTowerContext("tower1", vs_name="tower1", index=1, total=2):
        y = Conv2D("conv", x, 3, 3)
    assert y.name == "tower1/conv/output:0"
    assert {v.name for v in tfv1.global_variables()} == {"tower1/conv/W:0", "tower1/conv/b:0"}


def test_vs_name_requires_a_tower_name():
    with pytest.raises(ValueError, match="vs_name requires a non-empty"):
        PredictTowerContext("", vs_name="v")


def test_train_tower_context_inside_a_variable_scope_raises(graph):
    with tfv1.variable_scope("outer"):
        with pytest.raises(ValueError, match="TrainTowerContext.*inside a variable scope.*'outer'"):
            with TowerContext("", is_training=True):
                pass
    assert get_current_tower_context() is None


def test_vs_name_under_reuse_raises(graph):
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        with pytest.raises(ValueError, match="vs_name cannot be used under reuse"):
            with TrainTowerContext("tower1", vs_name="tower1", index=1, total=2):
                pass


def test_rebuilding_at_the_root_tower_under_reuse_is_legal_with_suffixed_op_names(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 2])
    with TowerContext("", is_training=True):
        _model(x)
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True), TowerContext("", is_training=False):
        y = _model(x)
    assert y.name == "fc_1/output:0"
    assert len(tfv1.global_variables()) == 8


def test_train_tower_index_must_be_below_total():
    with pytest.raises(ValueError, match=r"index must be in \[0, total=2\), got 2"):
        TrainTowerContext("t", index=2, total=2)


def test_tower_context_is_cleared_after_an_exception(graph):
    with pytest.raises(KeyError):
        with TowerContext("", is_training=True):
            raise KeyError("x")
    assert get_current_tower_context() is None
    with TowerContext("", is_training=False):          # usable again
        pass


def test_rebuilding_under_predict_tower_with_reuse_shares_variables_and_uses_ema(graph, make_session,
                                                                                 assign_values, rng):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 2])
    with TowerContext("", is_training=True):
        y_train = _model(x)
    n_vars, n_updates = len(tfv1.global_variables()), len(tfv1.get_collection(UPDATE_OPS))
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        with PredictTowerContext("tower-pred-0") as ctx:
            y_pred = _model(x)
    assert not ctx.has_own_variables
    assert len(tfv1.global_variables()) == n_vars == 8
    assert len(tfv1.get_collection(UPDATE_OPS)) == n_updates == 2
    assert y_pred.name == "tower-pred-0/fc/output:0"

    sess = make_session()
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    assign_values(sess, {"bn/mean/EMA": mean, "bn/variance/EMA": var})
    xv = rng.standard_normal((5, 4, 4, 2))
    conv_out = sess.graph.get_tensor_by_name("tower-pred-0/conv/output:0")
    c, out_pred, out_train = sess.run([conv_out, y_pred, y_train], {x: xv})
    w, b = sess.run([y_train.variables.W, y_train.variables.b])
    bn_inference = (c - mean) / np.sqrt(var + 1.001e-5)
    np.testing.assert_allclose(out_pred, bn_inference.reshape(5, -1) @ w + b, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out_pred, out_train, atol=1e-3)   # training normalises with batch statistics


def test_predict_tower_without_own_variables_rejects_new_trainable_variables(graph):
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        with pytest.raises(ValueError, match=r"created new trainable variables \['pred/w:0'\]"):
            with PredictTowerContext("pred"):
                tfv1.Variable(1.0, name="w")


def test_get_collection_in_tower_returns_only_items_added_inside(graph):
    tfv1.add_to_collection("things", tf.constant(1.0, name="before"))
    with TowerContext("", is_training=True) as ctx:
        inside = tf.constant(2.0, name="inside")
        tfv1.add_to_collection("things", inside)
        assert ctx.get_collection_in_tower("things") == [inside]
        assert ctx.get_collection_in_tower("never_used") == []


def test_predict_tower_discards_update_ops_added_inside(graph):
    kept = tf.constant(0.0, name="kept")
    tfv1.add_to_collection(UPDATE_OPS, kept)
    with PredictTowerContext("pred"):
        tfv1.add_to_collection(UPDATE_OPS, tf.constant(1.0))
    assert tfv1.get_collection(UPDATE_OPS) == [kept]


def test_non_main_training_tower_discards_summaries(graph):
    with TrainTowerContext("tower1", index=1, total=2):
        tfv1.summary.scalar("loss", tf.constant(1.0))
    assert tfv1.get_collection(tfv1.GraphKeys.SUMMARIES) == []


def test_layer_needing_a_tower_says_how_to_provide_one(graph):
    with pytest.raises(RuntimeError, match=r"wrap the model in `with TowerContext\('', is_training=\.\.\.\)`"):
        BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 3]))


def test_conv_fc_and_pooling_need_no_tower(graph):
    y = FullyConnected("fc", Conv2D("conv", tfv1.placeholder(tf.float32, [None, 4, 4, 2]), 3, 3), 2)
    assert y.name == "fc/output:0"

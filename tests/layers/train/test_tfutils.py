"""``layers.tfutils``: global step, moving summaries (against a NumPy EMA), variable getters."""
import numpy as np
import pytest
import tensorflow as tf

from layers import FullyConnected, TowerContext
from layers.tfutils import get_global_step_var, get_op_tensor_name, summary
from layers.tfutils.varreplace import freeze_variables, remap_variables
from layers.tower import MOVING_SUMMARY_OPS_KEY

tfv1 = tf.compat.v1


def test_global_step_is_one_int64_variable_at_the_root_scope(graph):
    with tfv1.variable_scope("somewhere"), tfv1.name_scope("tower0/"):
        gs = get_global_step_var()
    assert gs.op.name == "global_step" and gs.dtype.base_dtype == tf.int64
    assert get_global_step_var() is gs


def test_moving_summary_is_a_zero_debiased_ema(graph, make_session):
    x = tfv1.placeholder(tf.float32, [], name="loss")
    with TowerContext("", is_training=True):
        [ema] = summary.add_moving_summary(tf.identity(x, name="my_loss"), decay=0.5)
    assert tfv1.get_collection(MOVING_SUMMARY_OPS_KEY) == [ema]
    assert not [v for v in tfv1.global_variables() if "EMA" in v.op.name]      # local: not checkpointed
    sess = make_session()
    sess.run(tfv1.local_variables_initializer())
    got, biased = [], 0.0
    for k, v in enumerate([1.0, 3.0, 2.0], start=1):
        got.append(sess.run(ema, {x: v}))
        biased = 0.5 * biased + 0.5 * v
        assert got[-1] == pytest.approx(biased / (1 - 0.5 ** k), rel=1e-6)
    summ = tfv1.Summary.FromString(sess.run(tfv1.summary.merge_all(), {x: 0.0}))
    assert [v.tag for v in summ.value] == ["my_loss-summary"]


def test_moving_summary_is_skipped_outside_the_main_training_tower(graph):
    from layers import TrainTowerContext
    with TrainTowerContext("tower1", index=1, total=2):
        assert summary.add_moving_summary(tf.constant(1.0)) == []
    with pytest.raises(ValueError, match="only scalar tensors"):
        summary.add_moving_summary(tf.zeros([2]))


def test_freeze_variables_skip_collection_makes_them_untrainable(graph):
    x = tf.zeros([1, 3])
    with freeze_variables(stop_gradient=False, skip_collection=True):
        FullyConnected("frozen", x, 2)
    FullyConnected("free", x, 2)
    assert [v.op.name for v in tfv1.trainable_variables()] == ["free/W", "free/b"]
    assert {v.op.name for v in tfv1.get_collection(tfv1.GraphKeys.MODEL_VARIABLES)} >= {"frozen/W", "frozen/b"}


def test_freeze_variables_stop_gradient_blocks_the_gradient(graph):
    x = tf.ones([1, 3])
    with freeze_variables(stop_gradient=True):
        y = FullyConnected("fc", x, 2)
    w = next(v for v in tfv1.global_variables() if v.op.name == "fc/W")
    assert tf.gradients(tf.reduce_sum(y), [w]) == [None]


def test_remap_variables_transforms_what_layers_see(graph, make_session):
    with remap_variables(lambda v: v * 0.0):
        y = FullyConnected("fc", tf.ones([1, 3]), 2, bias_initializer=tf.constant_initializer(1.0))
    np.testing.assert_array_equal(make_session().run(y), [[0.0, 0.0]])


def test_op_tensor_names():
    assert get_op_tensor_name("a/b") == ("a/b", "a/b:0")
    assert get_op_tensor_name("a/b:1") == ("a/b", "a/b:1")

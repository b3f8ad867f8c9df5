"""FullyConnected: names, shapes, flattening order, dtype, argument handling, values vs NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from layers import FullyConnected, argscope, batch_flatten

tfv1 = tf.compat.v1


def _const_init(value):
    return tfv1.constant_initializer(np.asarray(value))


def test_fc_creates_W_and_b_with_tensorpack_shapes(graph):
    x = tfv1.placeholder(tf.float32, [None, 7])
    y = FullyConnected("fc", x, 3)
    assert {v.name: v.shape.as_list() for v in tfv1.global_variables()} == {"fc/W:0": [7, 3], "fc/b:0": [3]}
    assert y.variables.W.name == "fc/W:0" and y.variables.b.name == "fc/b:0"


def test_fc_output_is_named_output_and_is_post_activation(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 5])
    w, b = rng.standard_normal((5, 4)), rng.standard_normal(4)
    y = FullyConnected("fc", x, 4, activation=tf.nn.relu, kernel_initializer=_const_init(w),
                       bias_initializer=_const_init(b))
    assert y.name == "fc/output:0"
    xv = rng.standard_normal((3, 5))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), np.maximum(xv @ w + b, 0), rtol=1e-5, atol=1e-5)


def test_fc_flattens_4d_input_in_its_own_memory_order(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 3, 4])
    w = rng.standard_normal((24, 5))
    y = FullyConnected("fc", x, 5, kernel_initializer=_const_init(w))
    assert y.variables.W.shape.as_list() == [24, 5]
    xv = rng.standard_normal((3, 2, 3, 4))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv.reshape(3, -1) @ w, rtol=1e-5, atol=1e-5)


def test_fc_unknown_batch_runs_with_any_batch_size(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 4, 4])
    y = FullyConnected("fc", x, 3)
    assert y.shape.as_list() == [None, 3]
    sess = make_session()
    for n in (1, 5):
        assert sess.run(y, {x: rng.standard_normal((n, 4, 4))}).shape == (n, 3)


def test_fc_unknown_non_batch_dim_is_an_error(graph):
    x = tfv1.placeholder(tf.float32, [None, None, 4])
    with pytest.raises(ValueError, match="FullyConnected.*known statically"):
        FullyConnected("fc", x, 3)


def test_fc_float64(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 6])
    w = rng.standard_normal((6, 2))
    y = FullyConnected("fc", x, 2, kernel_initializer=_const_init(w))
    assert y.dtype == tf.float64 and y.variables.W.dtype.base_dtype == tf.float64
    xv = rng.standard_normal((4, 6))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv @ w, rtol=1e-12)


def test_fc_use_bias_false(graph):
    FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 6]), 2, use_bias=False)
    assert [v.name for v in tfv1.global_variables()] == ["fc/W:0"]


def test_fc_default_initializer_std_is_sqrt_2_over_in_dim(graph, make_session):
    tfv1.set_random_seed(11)
    y = FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 400]), 100)
    w = make_session().run(y.variables.W)
    std = np.sqrt(2.0 / 400)
    assert abs(w.std() / std - 1) < 0.05
    assert np.abs(w).max() > 3 * std


def test_fc_old_names_out_dim_and_nl(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 5])
    w = rng.standard_normal((5, 3))
    y = FullyConnected("fc", x, out_dim=3, nl=tf.nn.relu, W_init=_const_init(w))
    xv = rng.standard_normal((4, 5))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), np.maximum(xv @ w, 0), rtol=1e-5, atol=1e-5)


def test_fc_explicit_units_beat_argscope(graph):
    x = tfv1.placeholder(tf.float32, [None, 5])
    with argscope(FullyConnected, units=7, activation=tf.nn.relu):
        y = FullyConnected("fc", x, 3)
        z = FullyConnected("fc2", x)
    assert y.shape.as_list() == [None, 3]
    assert z.shape.as_list() == [None, 7]
    assert y.op.inputs[0].op.type == "Relu"


def test_fc_bad_units_names_layer_and_value(graph):
    with pytest.raises(ValueError, match=r"FullyConnected.*units.*-3"):
        FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 5]), -3)


def test_fc_too_many_positional_arguments(graph):
    with pytest.raises(TypeError, match=r"FullyConnected.*at most 1 positional.*got 2"):
        FullyConnected("fc", tfv1.placeholder(tf.float32, [None, 5]), 3, tf.nn.relu)


def test_batch_flatten_keeps_batch_and_flattens_the_rest(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, None])
    y = batch_flatten(x)
    xv = rng.standard_normal((3, 2, 5))
    np.testing.assert_array_equal(make_session().run(y, {x: xv}), xv.reshape(3, 10).astype(np.float32))

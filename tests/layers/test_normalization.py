"""LayerNorm and InstanceNorm: variables, output names, values vs NumPy, argument handling."""
import numpy as np
import pytest
import tensorflow as tf

from layers import InstanceNorm, LayerNorm, argscope

tfv1 = tf.compat.v1


def _affine(rng, c):
    return rng.uniform(0.5, 2, c), rng.standard_normal(c)


def _norm_ref(x, axes, gamma, beta, bshape, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma.reshape(bshape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(bshape)


# --------------------------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,data_format,bshape", [
    ((3, 5), "NHWC", (1, 5)),
    ((2, 3, 4, 5), "NHWC", (1, 1, 1, 5)),
    ((2, 5, 3, 4), "NCHW", (1, 5, 1, 1)),
])
def test_layernorm_matches_numpy(graph, make_session, rng, shape, data_format, bshape):
    gamma, beta = _affine(rng, 5)
    xv = 2 + 3 * rng.standard_normal(shape)
    x = tfv1.placeholder(tf.float32, [None, *shape[1:]])
    y = LayerNorm("ln", x, data_format=data_format, gamma_initializer=tfv1.constant_initializer(gamma))
    sess = make_session()
    sess.run(y.variables.beta.assign(beta))
    ref = _norm_ref(xv, tuple(range(1, len(shape))), gamma, beta, bshape, 1e-5)
    np.testing.assert_allclose(sess.run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_layernorm_variables_and_output_name(graph):
    y = LayerNorm("ln", tfv1.placeholder(tf.float32, [None, 4, 4, 6]))
    assert {v.name: v.shape.as_list() for v in tfv1.global_variables()} == {"ln/beta:0": [6], "ln/gamma:0": [6]}
    assert y.name == "ln/output:0"
    assert y.variables.gamma.name == "ln/gamma:0"


def test_layernorm_epsilon_is_used_as_given(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 3])
    y = LayerNorm("ln", x, epsilon=0.5)
    xv = rng.standard_normal((4, 3))
    ref = _norm_ref(xv, (1,), np.ones(3), np.zeros(3), (1, 3), 0.5)
    assert y.dtype == tf.float64
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-10)


def test_layernorm_unknown_batch_and_spatial_dims(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, None, None, 3])
    y = LayerNorm("ln", x)
    assert y.shape.as_list() == [None, None, None, 3]
    xv = rng.standard_normal((2, 3, 5, 3))
    ref = _norm_ref(xv, (1, 2, 3), np.ones(3), np.zeros(3), (1, 1, 1, 3), 1e-5)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_layernorm_old_names_use_bias_use_scale(graph):
    LayerNorm("ln", tfv1.placeholder(tf.float32, [None, 3]), use_bias=False, use_scale=False)
    assert tfv1.global_variables() == []


def test_layernorm_explicit_epsilon_beats_argscope(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 3])
    with argscope(LayerNorm, epsilon=10.0, center=False):
        y = LayerNorm("ln", x, epsilon=0.5)
    assert [v.op.name for v in tfv1.global_variables()] == ["ln/gamma"]
    xv = rng.standard_normal((4, 3))
    ref = _norm_ref(xv, (1,), np.ones(3), np.zeros(3), (1, 3), 0.5)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-10)


def test_layernorm_rejects_3d_input(graph):
    with pytest.raises(ValueError, match="LayerNorm.*2-D or 4-D"):
        LayerNorm("ln", tfv1.placeholder(tf.float32, [None, 3, 4]))


# --------------------------------------------------------------------------------------------
# InstanceNorm
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_instancenorm_matches_numpy(graph, make_session, rng, data_format):
    gamma, beta = _affine(rng, 4)
    if data_format == "NHWC":
        shape, axes, bshape = (3, 5, 6, 4), (1, 2), (1, 1, 1, 4)
    else:
        shape, axes, bshape = (3, 4, 5, 6), (2, 3), (1, 4, 1, 1)
    xv = 1 + 2 * rng.standard_normal(shape)
    x = tfv1.placeholder(tf.float32, [None, *shape[1:]])
    y = InstanceNorm("in", x, data_format=data_format, gamma_initializer=tfv1.constant_initializer(gamma))
    sess = make_session()
    sess.run(y.variables.beta.assign(beta))
    np.testing.assert_allclose(sess.run(y, {x: xv}), _norm_ref(xv, axes, gamma, beta, bshape, 1e-5), rtol=1e-4,
                               atol=1e-4)


def test_instancenorm_variables_and_output_name(graph):
    y = InstanceNorm("in", tfv1.placeholder(tf.float32, [None, 4, 4, 6]))
    assert {v.name: v.shape.as_list() for v in tfv1.global_variables()} == {"in/beta:0": [6], "in/gamma:0": [6]}
    assert y.name == "in/output:0"


def test_instancenorm_float64_unknown_spatial_dims(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, None, None, 2])
    y = InstanceNorm("in", x)
    assert y.dtype == tf.float64 and y.shape.as_list() == [None, None, None, 2]
    xv = rng.standard_normal((2, 3, 4, 2))
    ref = _norm_ref(xv, (1, 2), np.ones(2), np.zeros(2), (1, 1, 1, 2), 1e-5)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-10)


def test_instancenorm_use_affine_is_deprecated_and_sets_center_and_scale(graph):
    with pytest.warns(DeprecationWarning, match="use_affine"):
        InstanceNorm("in", tfv1.placeholder(tf.float32, [None, 4, 4, 6]), use_affine=False)
    assert tfv1.global_variables() == []


def test_instancenorm_rejects_2d_input(graph):
    with pytest.raises(ValueError, match="InstanceNorm.*4-D"):
        InstanceNorm("in", tfv1.placeholder(tf.float32, [None, 3]))


def test_layernorm_takes_no_positional_arguments_after_the_input(graph):
    # tensorpack: convert_to_tflayer_args(args_names=[]) asks for keywords
    with pytest.raises(TypeError, match=r"LayerNorm.*at most 0 positional"):
        LayerNorm("ln", tfv1.placeholder(tf.float32, [None, 3]), 0.5)

"""Conv2D and Conv2DTranspose (Deconv2D): names, shapes, dtypes, argument handling, values vs NumPy,
and the CPU kernel policy (NCHW, grouped and dilated convolutions build, run and train on a CPU)."""
import numpy as np
import pytest
import tensorflow as tf

from layers import Conv2D, Conv2DTranspose, Deconv2D, argscope, get_registered_layer, kernel_policy
from tests.layers.reference import conv2d_nhwc, conv2d_transpose_nhwc, nchw, nhwc

tfv1 = tf.compat.v1


def _const_init(value):
    return tfv1.constant_initializer(np.asarray(value))


def _var_shapes():
    return {v.name: v.shape.as_list() for v in tfv1.global_variables()}


# --------------------------------------------------------------------------------------------
# Conv2D: variables, names, shapes, dtype
# --------------------------------------------------------------------------------------------

def test_conv2d_creates_W_and_b_with_tensorpack_shapes(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    Conv2D("conv", x, 5, 3)
    assert _var_shapes() == {"conv/W:0": [3, 3, 3, 5], "conv/b:0": [5]}
    assert {v.name for v in tfv1.trainable_variables()} == {"conv/W:0", "conv/b:0"}


def test_conv2d_grouped_kernel_has_in_channels_divided_by_split(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 8])
    Conv2D("conv", x, 12, 3, split=4)
    assert _var_shapes()["conv/W:0"] == [3, 3, 2, 12]


def test_conv2d_use_bias_false_creates_only_W(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    Conv2D("conv", x, 4, 3, use_bias=False)
    assert list(_var_shapes()) == ["conv/W:0"]


def test_conv2d_output_exposes_its_variables(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    y = Conv2D("conv", x, 4, 3)
    assert y.variables.W.name == "conv/W:0"
    assert y.variables.b.name == "conv/b:0"


def test_conv2d_output_is_named_output_and_is_post_activation(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 6, 6, 2])
    w = rng.standard_normal((3, 3, 2, 4))
    y = Conv2D("conv", x, 4, 3, activation=tf.nn.relu, kernel_initializer=_const_init(w))
    assert y.name == "conv/output:0"
    assert y.op.type == "Identity"
    xv = rng.standard_normal((2, 6, 6, 2))
    out = make_session().run(y, {x: xv})
    np.testing.assert_allclose(out, np.maximum(conv2d_nhwc(xv, w), 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding,strides,kernel,expected", [
    ("same", 1, 3, [None, 9, 10, 4]),
    ("same", 2, 3, [None, 5, 5, 4]),
    ("valid", 1, 3, [None, 7, 8, 4]),
    ("valid", 2, 3, [None, 4, 4, 4]),
    ("valid", (2, 1), (3, 1), [None, 4, 10, 4]),
])
def test_conv2d_static_shape(graph, padding, strides, kernel, expected):
    x = tfv1.placeholder(tf.float32, [None, 9, 10, 3])
    y = Conv2D("conv", x, 4, kernel, strides=strides, padding=padding)
    assert y.shape.as_list() == expected


def test_conv2d_unknown_spatial_dims_stay_unknown_and_run(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, None, None, 3])
    y = Conv2D("conv", x, 4, 3, strides=2)
    assert y.shape.as_list() == [None, None, None, 4]
    out = make_session().run(y, {x: rng.standard_normal((2, 9, 10, 3))})
    assert out.shape == (2, 5, 5, 4)


def test_conv2d_float64_input_gives_float64_variables_and_output(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 6, 7, 2])
    w = rng.standard_normal((3, 3, 2, 4))
    y = Conv2D("conv", x, 4, 3, kernel_initializer=_const_init(w))
    assert y.dtype == tf.float64
    assert y.variables.W.dtype.base_dtype == tf.float64
    xv = rng.standard_normal((2, 6, 7, 2))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), conv2d_nhwc(xv, w), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Conv2D: values against the NumPy reference
# --------------------------------------------------------------------------------------------

CONV_CASES = [
    # padding, strides, dilation, split, kernel
    ("same", 1, 1, 1, 3),
    ("valid", 1, 1, 1, 3),
    ("same", 2, 1, 1, 3),
    ("valid", 2, 1, 1, 4),
    ("SAME", 2, 1, 1, 2),
    ("same", (2, 1), 1, 1, (3, 2)),
    ("same", 1, 2, 1, 3),
    ("valid", 1, 2, 1, 3),
    ("same", 1, (1, 3), 1, 3),
    ("same", 1, 1, 2, 3),
    ("valid", 2, 1, 4, 3),
    ("same", 1, 2, 2, 3),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("padding,strides,dilation,split,kernel", CONV_CASES)
def test_conv2d_nhwc_matches_numpy(graph, make_session, rng, padding, strides, dilation, split, kernel):
    kh, kw = _pair(kernel)
    w = rng.standard_normal((kh, kw, 8 // split, 8))
    b = rng.standard_normal(8)
    xv = rng.standard_normal((2, 9, 10, 8))
    x = tfv1.placeholder(tf.float32, [None, 9, 10, 8])
    y = Conv2D("conv", x, 8, kernel, strides=strides, padding=padding, dilation_rate=dilation, split=split,
               kernel_initializer=_const_init(w), bias_initializer=_const_init(b))
    ref = conv2d_nhwc(xv, w, _pair(strides), padding, _pair(dilation), split, bias=b)
    out = make_session().run(y, {x: xv})
    assert out.shape == ref.shape == tuple(d or 2 for d in y.shape.as_list())
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("data_format", ["NCHW", "channels_first"])
@pytest.mark.parametrize("padding,strides,dilation,split,kernel", [
    ("same", 1, 1, 1, 3), ("valid", 2, 1, 1, 3), ("same", 1, 2, 1, 3), ("same", 2, 1, 2, 3), ("same", 1, 2, 4, 3),
])
def test_conv2d_nchw_matches_numpy(graph, make_session, rng, data_format, padding, strides, dilation, split,
                                   kernel):
    w = rng.standard_normal((kernel, kernel, 8 // split, 8))
    b = rng.standard_normal(8)
    xv = rng.standard_normal((2, 8, 9, 10))          # (N, C, H, W)
    x = tfv1.placeholder(tf.float32, [None, 8, 9, 10])
    y = Conv2D("conv", x, 8, kernel, strides=strides, padding=padding, dilation_rate=dilation, split=split,
               data_format=data_format, kernel_initializer=_const_init(w), bias_initializer=_const_init(b))
    ref = nchw(conv2d_nhwc(nhwc(xv), w, _pair(strides), padding, _pair(dilation), split, bias=b))
    assert y.shape.as_list() == [None, *ref.shape[1:]]
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_nchw_equals_nhwc_with_the_same_weights(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 9, 9, 4])
    y_nhwc = Conv2D("conv", x, 6, 3, strides=2, activation=tf.nn.relu)
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        y_nchw = Conv2D("conv", tf.transpose(x, [0, 3, 1, 2]), 6, 3, strides=2, activation=tf.nn.relu,
                        data_format="NCHW")
    a, b = make_session().run([y_nhwc, y_nchw], {x: rng.standard_normal((3, 9, 9, 4))})
    np.testing.assert_allclose(nchw(a), b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Conv2D: gradients and training of the CPU-portable graphs (NCHW, grouped, dilated)
# --------------------------------------------------------------------------------------------

GRAD_CASES = [
    # data_format, strides, dilation, split
    ("NHWC", 1, 2, 1),
    ("NHWC", 2, 1, 2),
    ("NCHW", 2, 1, 1),
    ("NCHW", 1, 2, 2),
]


def _numeric_grad(f, arr, indices, h=1e-3):
    """Central differences of the scalar f at the given flat indices of arr (float64)."""
    grads = []
    for i in indices:
        plus, minus = arr.copy(), arr.copy()
        plus.flat[i] += h
        minus.flat[i] -= h
        grads.append((f(plus) - f(minus)) / (2 * h))
    return np.array(grads)


@pytest.mark.parametrize("data_format,strides,dilation,split", GRAD_CASES)
def test_conv2d_gradients_match_numpy_finite_differences(graph, make_session, rng, data_format, strides,
                                                         dilation, split):
    w = rng.standard_normal((3, 3, 4 // split, 4))
    xv = rng.standard_normal((2, 7, 8, 4))                      # NHWC values
    to_layer = nchw if data_format == "NCHW" else (lambda a: a)
    x = tf.constant(to_layer(xv))
    y = Conv2D("conv", x, 4, 3, strides=strides, dilation_rate=dilation, split=split, data_format=data_format,
               use_bias=False, kernel_initializer=_const_init(w))
    r = rng.standard_normal(y.shape.as_list())                  # loss = sum(y * r), r in the layer's layout
    loss = tf.reduce_sum(y * r)
    gx, gw = make_session().run(tf.gradients(loss, [x, y.variables.W]))

    def loss_np(xa, wa):
        return float(np.sum(to_layer(conv2d_nhwc(xa, wa, (strides, strides), "SAME", (dilation, dilation), split))
                            * r))

    w_idx = rng.choice(w.size, 12, replace=False)
    x_idx = rng.choice(xv.size, 12, replace=False)
    np.testing.assert_allclose(gw.flat[w_idx], _numeric_grad(lambda a: loss_np(xv, a), w, w_idx), rtol=1e-6,
                               atol=1e-6)
    gx_nhwc = nhwc(gx) if data_format == "NCHW" else gx
    np.testing.assert_allclose(gx_nhwc.flat[x_idx], _numeric_grad(lambda a: loss_np(a, w), xv, x_idx), rtol=1e-6,
                               atol=1e-6)


def test_conv2d_gradients_are_equal_in_nchw_and_nhwc(graph, make_session, rng):
    xv = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    x = tf.constant(xv)
    y1 = Conv2D("conv", x, 4, 3, dilation_rate=2, split=2)
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        y2 = Conv2D("conv", tf.transpose(x, [0, 3, 1, 2]), 4, 3, dilation_rate=2, split=2, data_format="NCHW")
    r = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    g1 = tf.gradients(tf.reduce_sum(y1 * r), y1.variables.W)[0]
    g2 = tf.gradients(tf.reduce_sum(y2 * nchw(r)), y2.variables.W)[0]
    a, b = make_session().run([g1, g2])
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv2d_nchw_grouped_dilated_trains_with_sgd_on_cpu(graph, make_session, rng):
    x = tf.constant(rng.standard_normal((4, 4, 8, 8)).astype(np.float32))       # NCHW
    target = tf.constant(rng.standard_normal((4, 4, 8, 8)).astype(np.float32))
    y = Conv2D("conv", x, 4, 3, dilation_rate=2, split=2, data_format="NCHW")
    loss = tf.reduce_mean(tf.square(y - target))
    train_op = tfv1.train.GradientDescentOptimizer(0.05).minimize(loss)
    sess = make_session()
    before = sess.run(loss)
    for _ in range(5):
        sess.run(train_op)
    assert sess.run(loss) < before


def test_kernel_policy_rejects_unknown_policy():
    with pytest.raises(ValueError, match="kernel_policy.*'fastest'"):
        with kernel_policy("fastest"):
            pass


def test_portable_policy_gives_the_same_values_as_auto_on_cpu(graph, make_session, rng):
    x = tf.constant(rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    y_auto = Conv2D("conv", x, 4, 3, split=2, data_format="NCHW")
    with kernel_policy("portable"), tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        y_port = Conv2D("conv", x, 4, 3, split=2, data_format="NCHW")
    a, b = make_session().run([y_auto, y_port])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Conv2D: initializer, argscope, old names, errors
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", [1, 4])
def test_conv2d_default_initializer_is_untruncated_normal_with_std_sqrt_2_over_fan_in(graph, make_session,
                                                                                      split):
    tfv1.set_random_seed(7)
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 64])
    y = Conv2D("conv", x, 64, 3, split=split)
    w = make_session().run(y.variables.W)
    std = np.sqrt(2.0 / (3 * 3 * 64 / split))
    assert abs(w.std() / std - 1) < 0.05
    assert abs(w.mean()) < 0.05 * std
    assert np.abs(w).max() > 3 * std           # a truncated normal would stop at 2 std
    np.testing.assert_array_equal(make_session().run(y.variables.b), np.zeros(64))


def test_conv2d_explicit_positional_arguments_beat_argscope(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with argscope(Conv2D, filters=8, kernel_size=5):
        y = Conv2D("conv", x, 4, 3)
    assert y.variables.W.shape.as_list() == [3, 3, 3, 4]


def test_conv2d_explicit_keyword_beats_argscope(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with argscope(Conv2D, padding="valid", strides=2):
        y = Conv2D("conv", x, 4, 3, padding="same")
    assert y.shape.as_list() == [None, 4, 4, 4]


def test_conv2d_argscope_fills_missing_arguments(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with argscope(Conv2D, filters=6, kernel_size=5, padding="valid"):
        y = Conv2D("conv", x)
    assert y.shape.as_list() == [None, 4, 4, 6]
    assert y.variables.W.shape.as_list() == [5, 5, 3, 6]


def test_conv2d_old_argument_names_mean_the_same_as_new_ones(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 7, 7, 2])
    w = rng.standard_normal((3, 3, 2, 4))
    b = rng.standard_normal(4)
    old = Conv2D("old", x, out_channel=4, kernel_shape=3, stride=2, nl=tf.nn.relu, W_init=_const_init(w),
                 b_init=_const_init(b))
    new = Conv2D("new", x, filters=4, kernel_size=3, strides=2, activation=tf.nn.relu,
                 kernel_initializer=_const_init(w), bias_initializer=_const_init(b))
    xv = rng.standard_normal((2, 7, 7, 2))
    a, c = make_session().run([old, new], {x: xv})
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, np.maximum(conv2d_nhwc(xv, w, (2, 2), bias=b), 0), rtol=1e-4, atol=1e-4)


def test_conv2d_unknown_padding_names_layer_argument_and_value(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(ValueError, match=r"Conv2D.*padding.*'full'"):
        Conv2D("conv", x, 4, 3, padding="full")


def test_conv2d_channels_not_divisible_by_split_names_layer_and_values(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 6])
    with pytest.raises(ValueError, match=r"Conv2D.*channels \(6\).*split \(4\)"):
        Conv2D("conv", x, 8, 3, split=4)


def test_conv2d_filters_not_divisible_by_split_is_an_error(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 8])
    with pytest.raises(ValueError, match=r"Conv2D.*filters \(6\).*split \(4\)"):
        Conv2D("conv", x, 6, 3, split=4)


def test_conv2d_unknown_data_format_names_layer_argument_and_value(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(ValueError, match=r"Conv2D.*data_format 'NHCW'"):
        Conv2D("conv", x, 4, 3, data_format="NHCW")


def test_conv2d_dilation_with_stride_is_an_error(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(ValueError, match=r"Conv2D.*dilation_rate.*strides"):
        Conv2D("conv", x, 4, 3, strides=2, dilation_rate=2)


def test_conv2d_bad_kernel_size_names_the_argument(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(TypeError, match=r"Conv2D.*kernel_size.*'3'"):
        Conv2D("conv", x, 4, "3")


def test_conv2d_missing_name_is_an_error_that_says_so(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(TypeError, match=r"Conv2D.*first argument must be the layer name"):
        Conv2D(x, 4, 3)


def test_conv2d_too_many_positional_arguments_is_an_error(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(TypeError, match=r"Conv2D.*at most 2 positional.*got 3"):
        Conv2D("conv", x, 4, 3, 2)


def test_conv2d_old_and_new_name_in_the_same_call_is_an_error(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(TypeError, match=r"Conv2D.*'out_channel'.*'filters'"):
        Conv2D("conv", x, out_channel=4, filters=4, kernel_size=3)


def test_conv2d_unknown_keyword_is_an_error_naming_it(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with pytest.raises(TypeError, match=r"Conv2D.*unknown argument.*'groups'"):
        Conv2D("conv", x, 4, 3, groups=2)


# --------------------------------------------------------------------------------------------
# Conv2DTranspose / Deconv2D
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_transpose_static_shape_equals_evaluated_shape(graph, make_session, padding, stride):
    # tensorpack's models_test: 20 filters 3x3 on 1x12x18x3
    x = tf.constant(np.random.default_rng(0).random((1, 12, 18, 3)), dtype=tf.float32)
    y = Conv2DTranspose("deconv", x, 20, 3, strides=stride, padding=padding)
    out = make_session().run(y)
    assert tuple(y.shape.as_list()) == out.shape
    expected_hw = (12 * stride, 18 * stride) if padding == "same" else \
        (12 * stride + max(3 - stride, 0), 18 * stride + max(3 - stride, 0))
    assert out.shape == (1, *expected_hw, 20)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_transpose_unknown_width_stays_unknown(graph, make_session, padding, stride):
    x = tfv1.placeholder(tf.float32, [1, 12, None, 3])
    y = Conv2DTranspose("deconv", x, 20, 3, strides=stride, padding=padding)
    out = make_session().run(y, {x: np.zeros((1, 12, 18, 3), np.float32)})
    static = y.shape.as_list()
    assert static[2] is None
    assert [static[0], static[1], static[3]] == [out.shape[0], out.shape[1], out.shape[3]]


def test_conv2d_transpose_variables_have_tensorpack_layout(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    y = Conv2DTranspose("deconv", x, 5, (3, 2))
    assert _var_shapes() == {"deconv/W:0": [3, 2, 5, 3], "deconv/b:0": [5]}
    assert y.name == "deconv/output:0"


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("stride,kernel", [(1, 3), (2, 3), (2, 2), (2, 1), (3, 4)])
def test_conv2d_transpose_matches_numpy(graph, make_session, rng, padding, stride, kernel):
    w = rng.standard_normal((kernel, kernel, 4, 3))
    b = rng.standard_normal(4)
    xv = rng.standard_normal((2, 5, 6, 3))
    x = tfv1.placeholder(tf.float32, [None, 5, 6, 3])
    y = Conv2DTranspose("deconv", x, 4, kernel, strides=stride, padding=padding,
                        kernel_initializer=_const_init(w), bias_initializer=_const_init(b))
    ref = conv2d_transpose_nhwc(xv, w, (stride, stride), padding) + b
    out = make_session().run(y, {x: xv})
    assert y.shape.as_list() == [None, *ref.shape[1:]]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding,stride", [("same", 2), ("valid", 2), ("same", 1)])
def test_conv2d_transpose_nchw_matches_numpy(graph, make_session, rng, padding, stride):
    w = rng.standard_normal((3, 3, 4, 3))
    xv = rng.standard_normal((2, 3, 5, 6))                       # NCHW
    x = tfv1.placeholder(tf.float32, [None, 3, 5, 6])
    y = Conv2DTranspose("deconv", x, 4, 3, strides=stride, padding=padding, data_format="NCHW",
                        kernel_initializer=_const_init(w))
    ref = nchw(conv2d_transpose_nhwc(nhwc(xv), w, (stride, stride), padding))
    assert y.shape.as_list() == [None, *ref.shape[1:]]
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_transpose_nchw_gradients_match_finite_differences(graph, make_session, rng):
    w = rng.standard_normal((3, 3, 2, 3))
    xv = rng.standard_normal((2, 3, 4, 5))                       # NCHW
    x = tf.constant(xv)
    y = Conv2DTranspose("deconv", x, 2, 3, strides=2, data_format="NCHW", use_bias=False,
                        kernel_initializer=_const_init(w))
    r = rng.standard_normal(y.shape.as_list())
    gw = make_session().run(tf.gradients(tf.reduce_sum(y * r), y.variables.W)[0])

    def loss_np(wa):
        return float(np.sum(nchw(conv2d_transpose_nhwc(nhwc(xv), wa, (2, 2), "same")) * r))

    idx = np.arange(w.size)
    np.testing.assert_allclose(gw.ravel(), _numeric_grad(loss_np, w, idx), rtol=1e-6, atol=1e-6)


def test_conv2d_transpose_float64(graph, make_session, rng):
    w = rng.standard_normal((3, 3, 2, 3))
    xv = rng.standard_normal((1, 4, 4, 3))
    x = tfv1.placeholder(tf.float64, [None, 4, 4, 3])
    y = Conv2DTranspose("deconv", x, 2, 3, strides=2, kernel_initializer=_const_init(w))
    assert y.dtype == tf.float64 and y.variables.W.dtype.base_dtype == tf.float64
    np.testing.assert_allclose(make_session().run(y, {x: xv}), conv2d_transpose_nhwc(xv, w, (2, 2)), rtol=1e-10,
                               atol=1e-10)


def test_conv2d_transpose_default_initializer_fan_in_is_kh_kw_filters(graph, make_session):
    tfv1.set_random_seed(3)
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 16])
    y = Conv2DTranspose("deconv", x, 128, 3)
    w = make_session().run(y.variables.W)                        # [3, 3, 128, 16]
    std = np.sqrt(2.0 / (3 * 3 * 128))
    assert abs(w.std() / std - 1) < 0.05
    assert np.abs(w).max() > 3 * std


def test_deconv2d_is_an_alias_of_conv2d_transpose(graph):
    assert Deconv2D is Conv2DTranspose
    assert get_registered_layer("Deconv2D") is get_registered_layer("Conv2DTranspose")
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    with argscope(Deconv2D, filters=6, kernel_size=2, strides=2):
        y = Conv2DTranspose("deconv", x)
    assert y.shape.as_list() == [None, 8, 8, 6]


def test_conv2d_transpose_old_names_and_explicit_positional_beats_argscope(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    with argscope(Conv2DTranspose, out_channel=8, kernel_shape=5, stride=1):
        y = Conv2DTranspose("deconv", x, 6, 2, 2)
        z = Conv2DTranspose("deconv2", x)
    assert y.variables.W.shape.as_list() == [2, 2, 6, 3]
    assert y.shape.as_list() == [None, 8, 8, 6]
    assert z.variables.W.shape.as_list() == [5, 5, 8, 3]
    assert z.shape.as_list() == [None, 4, 4, 8]


def test_conv2d_transpose_unknown_padding_names_layer_argument_and_value(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    with pytest.raises(ValueError, match=r"Conv2DTranspose.*padding.*'full'"):
        Conv2DTranspose("deconv", x, 4, 3, padding="full")

"""MaxPooling, AvgPooling, GlobalAvgPooling, FixedUnPooling: shapes, names, values vs NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from layers import AvgPooling, FixedUnPooling, GlobalAvgPooling, MaxPooling, argscope
from tests.layers.reference import nchw, nhwc, pool2d_nhwc

tfv1 = tf.compat.v1

POOLS = {"max": MaxPooling, "avg": AvgPooling}

POOL_CASES = [
    # pool_size, strides, padding
    (2, None, "valid"),
    (3, None, "valid"),
    (3, None, "same"),
    (3, 2, "valid"),
    (3, 2, "same"),
    (2, 1, "same"),
    ((3, 2), (1, 2), "SAME"),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("pool_size,strides,padding", POOL_CASES)
def test_pooling_matches_numpy(graph, make_session, rng, mode, pool_size, strides, padding):
    xv = rng.standard_normal((2, 7, 8, 3))
    x = tfv1.placeholder(tf.float32, [None, 7, 8, 3])
    y = POOLS[mode]("pool", x, pool_size, strides, padding=padding)
    ref = pool2d_nhwc(xv, _pair(pool_size), _pair(strides or pool_size), padding, mode)
    assert y.shape.as_list() == [None, *ref.shape[1:]]
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_default_stride_is_pool_size(graph, mode):
    x = tfv1.placeholder(tf.float32, [None, 12, 12, 3])
    assert POOLS[mode]("pool", x, 3).shape.as_list() == [None, 4, 4, 3]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_default_padding_is_valid(graph, mode):
    x = tfv1.placeholder(tf.float32, [None, 7, 7, 3])
    assert POOLS[mode]("pool", x, 2).shape.as_list() == [None, 3, 3, 3]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("data_format", ["NCHW", "channels_first"])
def test_pooling_nchw_matches_numpy(graph, make_session, rng, mode, data_format):
    xv = rng.standard_normal((2, 3, 7, 8))
    x = tfv1.placeholder(tf.float32, [None, 3, 7, 8])
    y = POOLS[mode]("pool", x, 3, 2, padding="same", data_format=data_format)
    ref = nchw(pool2d_nhwc(nhwc(xv), (3, 3), (2, 2), "same", mode))
    assert y.shape.as_list() == [None, *ref.shape[1:]]
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_output_name_and_no_variables(graph, mode):
    y = POOLS[mode]("pool", tfv1.placeholder(tf.float32, [None, 4, 4, 3]), 2)
    assert y.name == "pool/output:0"
    assert tfv1.global_variables() == []


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_unknown_dims_run(graph, make_session, rng, mode):
    x = tfv1.placeholder(tf.float32, [None, None, None, 3])
    y = POOLS[mode]("pool", x, 2)
    assert y.shape.as_list() == [None, None, None, 3]
    assert make_session().run(y, {x: rng.standard_normal((2, 6, 9, 3))}).shape == (2, 3, 4, 3)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_float64(graph, make_session, rng, mode):
    xv = rng.standard_normal((1, 4, 4, 2))
    x = tfv1.placeholder(tf.float64, [None, 4, 4, 2])
    y = POOLS[mode]("pool", x, 2)
    assert y.dtype == tf.float64
    np.testing.assert_allclose(make_session().run(y, {x: xv}), pool2d_nhwc(xv, (2, 2), (2, 2), "valid", mode),
                               rtol=1e-12)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_old_names_shape_and_stride(graph, mode):
    x = tfv1.placeholder(tf.float32, [None, 9, 9, 3])
    y = POOLS[mode]("pool", x, shape=3, stride=1)
    assert y.shape.as_list() == [None, 7, 7, 3]


def test_pooling_explicit_beats_argscope(graph):
    x = tfv1.placeholder(tf.float32, [None, 8, 8, 3])
    with argscope([MaxPooling, AvgPooling], pool_size=4, padding="same"):
        a = MaxPooling("a", x, 2)
        b = AvgPooling("b", x)
        c = MaxPooling("c", x, 3, padding="valid")
    assert a.shape.as_list() == [None, 4, 4, 3]
    assert b.shape.as_list() == [None, 2, 2, 3]
    assert c.shape.as_list() == [None, 2, 2, 3]


def test_pooling_unknown_padding_names_layer_argument_and_value(graph):
    with pytest.raises(ValueError, match=r"MaxPooling.*padding.*'full'"):
        MaxPooling("pool", tfv1.placeholder(tf.float32, [None, 4, 4, 3]), 2, padding="full")


def test_pooling_unknown_data_format_names_layer_and_value(graph):
    with pytest.raises(ValueError, match=r"AvgPooling.*data_format 'NWHC'"):
        AvgPooling("pool", tfv1.placeholder(tf.float32, [None, 4, 4, 3]), 2, data_format="NWHC")


# --------------------------------------------------------------------------------------------
# GlobalAvgPooling
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_global_avg_pooling_is_spatial_mean(graph, make_session, rng, data_format):
    xv = rng.standard_normal((2, 5, 6, 3))
    feed = xv if data_format == "NHWC" else nchw(xv)
    x = tfv1.placeholder(tf.float32, [None, *feed.shape[1:]])
    y = GlobalAvgPooling("gap", x, data_format=data_format)
    assert y.name == "gap/output:0"
    assert y.op.type == "Mean"
    assert y.shape.as_list() == [None, 3]
    np.testing.assert_allclose(make_session().run(y, {x: feed}), xv.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_global_avg_pooling_unknown_spatial_dims(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, None, None, 4])
    y = GlobalAvgPooling("gap", x)
    assert y.shape.as_list() == [None, 4] and y.dtype == tf.float64
    xv = rng.standard_normal((3, 2, 7, 4))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv.mean(axis=(1, 2)), rtol=1e-12)


def test_global_avg_pooling_rejects_non_4d_input(graph):
    with pytest.raises(ValueError, match="GlobalAvgPooling.*4-D"):
        GlobalAvgPooling("gap", tfv1.placeholder(tf.float32, [None, 3]))


# --------------------------------------------------------------------------------------------
# FixedUnPooling
# --------------------------------------------------------------------------------------------

def test_fixed_unpooling_scale_2_puts_input_top_left_and_zeros_elsewhere(graph, make_session):
    # tensorpack's models_test
    xv = np.random.default_rng(5).random((1, 3, 4, 3)).astype(np.float32)
    y = FixedUnPooling("unpool", tf.constant(xv), 2)
    out = make_session().run(y)
    assert out.shape == (1, 6, 8, 3)
    assert tuple(y.shape.as_list()) == (1, 6, 8, 3)
    np.testing.assert_array_equal(out[:, 0::2, 0::2, :], xv)
    mask = np.ones(out.shape, bool)
    mask[:, 0::2, 0::2, :] = False
    assert np.all(out[mask] == 0)


def test_fixed_unpooling_custom_matrix_is_a_kronecker_product(graph, make_session, rng):
    xv = rng.standard_normal((2, 3, 4, 2))
    mat = rng.standard_normal((2, 3))
    x = tfv1.placeholder(tf.float64, [None, 3, 4, 2])
    y = FixedUnPooling("unpool", x, (2, 3), unpool_mat=mat)
    ref = np.stack([np.stack([np.kron(xv[n, :, :, c], mat) for c in range(2)], -1) for n in range(2)])
    assert y.shape.as_list() == [None, 6, 12, 2]
    assert y.name == "unpool/output:0"
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-12)


def test_fixed_unpooling_nchw(graph, make_session, rng):
    xv = rng.standard_normal((1, 2, 3, 4))                        # NCHW
    y = FixedUnPooling("unpool", tf.constant(xv), 2, data_format="NCHW")
    out = make_session().run(y)
    assert out.shape == (1, 2, 6, 8)
    np.testing.assert_array_equal(out[:, :, 0::2, 0::2], xv)
    assert out[:, :, 1::2, :].sum() == 0 and out[:, :, :, 1::2].sum() == 0


def test_fixed_unpooling_unknown_spatial_dims_stay_unknown(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, None, 4, 3])
    y = FixedUnPooling("unpool", x, 2)
    assert y.shape.as_list() == [None, None, 8, 3]
    assert make_session().run(y, {x: rng.standard_normal((2, 5, 4, 3))}).shape == (2, 10, 8, 3)


def test_fixed_unpooling_wrong_matrix_shape_is_an_error(graph):
    with pytest.raises(ValueError, match=r"FixedUnPooling.*unpool_mat.*\[2, 2\]"):
        FixedUnPooling("unpool", tfv1.placeholder(tf.float32, [None, 3, 3, 1]), 2, unpool_mat=np.ones((3, 3)))

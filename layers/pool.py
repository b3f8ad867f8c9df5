"""Pooling layers: MaxPooling, AvgPooling, GlobalAvgPooling, FixedUnPooling."""
from __future__ import annotations

import numpy as np

from . import _utils as U
from ._compat import tf, use_native_kernels
from .registry import layer_register

__all__ = ["MaxPooling", "AvgPooling", "GlobalAvgPooling", "FixedUnPooling"]

_POOL_RENAMES = {"shape": "pool_size", "stride": "strides"}


def _pool(layer, op, inputs, pool_size, strides, padding, data_format):
    fmt = U.data_format(layer, data_format)
    pad = U.padding(layer, padding)
    if inputs.shape.rank != 4:
        raise ValueError(f"{layer}: expected a 4-D input ({fmt}), got shape {inputs.shape}")
    ksize = U.shape2d(layer, "pool_size", pool_size)
    strides = ksize if strides is None else U.shape2d(layer, "strides", strides)
    U.positive(layer, "pool_size", ksize)
    U.positive(layer, "strides", strides)
    if fmt == "NHWC" or use_native_kernels():
        k4 = [1, *ksize, 1] if fmt == "NHWC" else [1, 1, *ksize]
        s4 = [1, *strides, 1] if fmt == "NHWC" else [1, 1, *strides]
        out = op(inputs, k4, s4, pad, data_format=fmt)
    else:
        out = U.to_nchw(op(U.to_nhwc(inputs), [1, *ksize, 1], [1, *strides, 1], pad, data_format="NHWC"))
    return tf.identity(out, name="output")


@layer_register(log_shape=True, positional=("pool_size", "strides"), renames=_POOL_RENAMES)
def MaxPooling(inputs, pool_size, strides=None, padding="valid", data_format="channels_last"):
    """Max pooling. ``strides`` defaults to ``pool_size``; padding 'valid' (default) or 'same'.

    Returns: ``<name>/output``. Old names: ``shape`` -> pool_size, ``stride`` -> strides.
    """
    return _pool("MaxPooling", tf.nn.max_pool2d, inputs, pool_size, strides, padding, data_format)


@layer_register(log_shape=True, positional=("pool_size", "strides"), renames=_POOL_RENAMES)
def AvgPooling(inputs, pool_size, strides=None, padding="valid", data_format="channels_last"):
    """Average pooling (with 'same', padded cells are excluded from the mean, as in TF).

    Returns: ``<name>/output``. ``strides`` defaults to ``pool_size``.
    """
    return _pool("AvgPooling", tf.nn.avg_pool2d, inputs, pool_size, strides, padding, data_format)


@layer_register(log_shape=True)
def GlobalAvgPooling(x, data_format="channels_last"):
    """Mean over the spatial axes of a 4-D tensor.

    Returns: ``<name>/output``: [N, C].
    """
    fmt = U.data_format("GlobalAvgPooling", data_format)
    if x.shape.rank != 4:
        raise ValueError(f"GlobalAvgPooling: expected a 4-D input, got shape {x.shape}")
    axis = [1, 2] if fmt == "NHWC" else [2, 3]
    return tf.reduce_mean(x, axis, name="output")


@layer_register(log_shape=True, positional=("shape", "unpool_mat"))
def FixedUnPooling(x, shape, unpool_mat=None, data_format="channels_last"):
    """Unpool by a fixed matrix: each input cell becomes ``unpool_mat * value`` (Kronecker product).

    Args:
        shape: int or (sh, sw), the upscaling factors.
        unpool_mat: [sh, sw] matrix; default 1 at the top-left, 0 elsewhere.

    Returns: ``<name>/output`` (tensorpack left it unnamed): [N, H*sh, W*sw, C] for NHWC.
    """
    layer = "FixedUnPooling"
    fmt = U.data_format(layer, data_format)
    sh, sw = U.shape2d(layer, "shape", shape)
    U.positive(layer, "shape", [sh, sw])
    if x.shape.rank != 4:
        raise ValueError(f"{layer}: expected a 4-D input, got shape {x.shape}")
    if unpool_mat is None:
        mat = np.zeros((sh, sw), dtype=x.dtype.as_numpy_dtype)
        mat[0, 0] = 1
        mat = tf.constant(mat)
    else:
        mat = tf.cast(tf.convert_to_tensor(unpool_mat), x.dtype)
        if mat.shape.as_list() != [sh, sw]:
            raise ValueError(f"{layer}: unpool_mat must have shape {[sh, sw]}, got {mat.shape.as_list()}")
    xh = x if fmt == "NHWC" else U.to_nhwc(x)                       # (N, H, W, C)
    prod = xh[:, :, None, :, None, :] * tf.reshape(mat, [1, 1, sh, 1, sw, 1])  # (N, H, sh, W, sw, C)
    dyn = tf.shape(xh)
    out = tf.reshape(prod, tf.stack([dyn[0], dyn[1] * sh, dyn[2] * sw, dyn[3]]))
    n, h, w, c = xh.shape.as_list()
    out.set_shape([n, h and h * sh, w and w * sw, c])
    if fmt == "NCHW":
        out = U.to_nchw(out)
    return tf.identity(out, name="output")

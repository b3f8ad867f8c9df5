"""LayerNorm and InstanceNorm."""
from __future__ import annotations

import warnings

from . import _utils as U
from ._compat import tf, tfv1
from .registry import layer_register

__all__ = ["LayerNorm", "InstanceNorm"]

_RENAMES = {"use_bias": "center", "use_scale": "scale", "gamma_init": "gamma_initializer"}


def _affine_vars(num_chan, dtype, center, scale, gamma_initializer):
    beta = tfv1.get_variable("beta", [num_chan], dtype=dtype, initializer=tfv1.zeros_initializer()) \
        if center else None
    gamma = tfv1.get_variable("gamma", [num_chan], dtype=dtype,
                              initializer=gamma_initializer or tfv1.ones_initializer()) if scale else None
    return beta, gamma


def _normalize(x, axes, beta, gamma, bshape, epsilon):
    mean, var = tf.nn.moments(x, axes, keepdims=True)
    b = tf.reshape(beta, bshape) if beta is not None else None
    g = tf.reshape(gamma, bshape) if gamma is not None else None
    out = tf.nn.batch_normalization(x, mean, var, b, g, epsilon)
    return tf.identity(out, name="output")


@layer_register(renames=_RENAMES)
def LayerNorm(x, epsilon=1e-5, *, center=True, scale=True, gamma_initializer=None,
              data_format="channels_last"):
    """Layer normalization: statistics over all non-batch axes, per-channel ``beta``/``gamma``.

    Args:
        x: 2-D [N, C] or 4-D (NHWC / NCHW) tensor.
        epsilon: added to the variance, 1e-5.
        center, scale: learn ``beta`` (zeros) / ``gamma`` (``gamma_initializer``, default ones).

    Returns:
        ``<name>/output`` (tensorpack's tensor was ``<name>/output/add_1``; same values).

    Variable Names:
        * ``beta``: [C], ``gamma``: [C]. ``output.variables`` holds the variables themselves (tensorpack
          held reshaped copies).
    """
    layer = "LayerNorm"
    fmt = U.data_format(layer, data_format)
    ndims = x.shape.rank
    if ndims not in (2, 4):
        raise ValueError(f"{layer}: input must be 2-D or 4-D, got shape {x.shape}")
    axis = 1 if ndims == 2 or fmt == "NCHW" else 3
    chan = x.shape[axis]
    if chan is None:
        raise ValueError(f"{layer}: the channel dimension must be known, got shape {x.shape}")
    beta, gamma = _affine_vars(int(chan), x.dtype.base_dtype, center, scale, gamma_initializer)
    bshape = [1] * ndims
    bshape[axis] = int(chan)
    out = _normalize(x, list(range(1, ndims)), beta, gamma, bshape, epsilon)
    return U.set_variables(out, beta=beta, gamma=gamma)


@layer_register(renames={"gamma_init": "gamma_initializer"})
def InstanceNorm(x, epsilon=1e-5, *, center=True, scale=True, gamma_initializer=None,
                 data_format="channels_last", use_affine=None):
    """Instance normalization: statistics over H and W of each sample and channel (4-D input only).

    ``use_affine`` is deprecated and sets both ``center`` and ``scale``. Output and variables as
    :func:`LayerNorm`.
    """
    layer = "InstanceNorm"
    fmt = U.data_format(layer, data_format)
    if use_affine is not None:
        warnings.warn("InstanceNorm(use_affine=) is deprecated; use center= and scale=", DeprecationWarning,
                      stacklevel=3)
        center = scale = bool(use_affine)
    if x.shape.rank != 4:
        raise ValueError(f"{layer}: input must be 4-D, got shape {x.shape}")
    chan = U.static_channels(layer, x, fmt)
    beta, gamma = _affine_vars(chan, x.dtype.base_dtype, center, scale, gamma_initializer)
    axes = [1, 2] if fmt == "NHWC" else [2, 3]
    bshape = [1, 1, 1, chan] if fmt == "NHWC" else [1, chan, 1, 1]
    out = _normalize(x, axes, beta, gamma, bshape, epsilon)
    return U.set_variables(out, beta=beta, gamma=gamma)

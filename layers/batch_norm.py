"""BatchNorm with tensorpack 0.11's numerics, variable names and update semantics."""
from __future__ import annotations

import logging

from . import _utils as U
from ._compat import tf, tfv1
from .registry import layer_register
from .tower import require_tower_context

__all__ = ["BatchNorm"]

logger = logging.getLogger("layers")
_warned_frozen = set()
_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)
#: tensorpack's fused (4-D) BatchNorm clamps epsilon to at least this (the clamp lived in the Keras layer it
#: wrapped; TF 2.21's tf.nn.fused_batch_norm no longer applies it, so it is applied here).
FUSED_MIN_EPSILON = 1.001e-5

_BN_RENAMES = {"use_bias": "center", "use_scale": "scale", "gamma_init": "gamma_initializer",
               "decay": "momentum", "use_local_stat": "training"}


def _ema_update(var, value, momentum, name):
    # var <- momentum * var + (1 - momentum) * value, written as Keras/tensorpack do it.
    return var.assign_sub((var - tf.cast(value, var.dtype)) * (1.0 - momentum), name=name)


@layer_register(renames=_BN_RENAMES)
def BatchNorm(inputs, axis=None, *, training=None, momentum=0.9, epsilon=1e-5, center=True, scale=True,
              beta_initializer=None, gamma_initializer=None, virtual_batch_size=None,
              data_format="channels_last", ema_update="default", sync_statistics=None, internal_update=None):
    """Batch normalization, tensorpack's ``BatchNorm`` (needs a TowerContext).

    Args:
        inputs: 2-D [N, C] or 4-D (NHWC / NCHW) tensor.
        axis: channel axis, 1 or 3; default 1 for 2-D input, else from ``data_format``.
        training: normalise with batch statistics (True) or the moving averages (False); default
            is the tower's ``is_training`` (old name ``use_local_stat``). Moving statistics during
            training ("frozen BN" for fine-tuning) are allowed and logged once.
        momentum: EMA momentum, 0.9 (old name ``decay``): ``ema = m * ema + (1 - m) * batch_stat``.
        epsilon: 1e-5. On 4-D input TF's fused kernel is used, which clamps it to >= 1.001e-5 and
            feeds the unbiased (n / (n - 1)) batch variance to the moving average while normalising
            with the biased one — exactly tensorpack's numerics. 2-D input is not fused (biased
            variance for both, epsilon as given).
        center, scale: learn ``beta`` / ``gamma`` (old names ``use_bias`` / ``use_scale``).
        virtual_batch_size: "ghost" batch norm in training: statistics per sub-batch of this size
            (N must be divisible); the moving averages follow the first sub-batch. Ignored in inference.
        ema_update: 'default' == 'collection' (update ops go to UPDATE_OPS, run them with the train op),
            'internal' (every fetch of the output updates the EMA; for control flow / GANs), 'skip'.
            Only the main training tower, or a predict tower with ``training=True``, updates.
        sync_statistics: not supported (multi-GPU NCCL/Horovod); anything but None is an error.

    Returns:
        ``<name>/output``, same shape and dtype as the input.

    Variable Names:
        * ``beta``: [C] (if center), ``gamma``: [C] (if scale)
        * ``mean/EMA``, ``variance/EMA``: [C], non-trainable, in MODEL_VARIABLES. (tensorpack added
          them to MODEL_VARIABLES only in a training tower, so inference-only graphs lost them when
          dumped; here they are always model variables.)
    """
    layer = "BatchNorm"
    if internal_update is not None:
        raise TypeError(f"{layer}: internal_update= was removed in tensorpack 0.10; use ema_update='internal'")
    if sync_statistics is not None:
        raise ValueError(f"{layer}: sync_statistics={sync_statistics!r} is not supported; expected None")
    if ema_update not in ("default", "collection", "internal", "skip"):
        raise ValueError(f"{layer}: ema_update must be one of 'default', 'collection', 'internal', 'skip', "
                         f"got {ema_update!r}")
    ctx = require_tower_context(layer)
    fmt = U.data_format(layer, data_format)
    ndims = inputs.shape.rank
    if ndims not in (2, 4):
        raise ValueError(f"{layer}: input must be 2-D or 4-D, got shape {inputs.shape}")
    if axis is None:
        axis = 1 if ndims == 2 or fmt == "NCHW" else 3
    if axis not in (1, 3) or (ndims == 2 and axis != 1):
        raise ValueError(f"{layer}: axis must be 1 or 3 (1 for 2-D input), got {axis}")
    if ndims == 4:
        fmt = "NCHW" if axis == 1 else "NHWC"
    num_chan = inputs.shape[axis]
    if num_chan is None:
        raise ValueError(f"{layer}: the channel dimension (axis {axis}) must be known, got shape {inputs.shape}")
    num_chan = int(num_chan)

    training = ctx.is_training if training is None else bool(training)
    if not training and ctx.is_training:
        key = tfv1.get_variable_scope().name
        if key not in _warned_frozen:
            _warned_frozen.add(key)
            logger.warning("[BatchNorm] %s uses moving_mean/moving_variance in training.", key)
    do_ema_update = training and (ctx.is_main_training_tower or not ctx.is_training) and ema_update != "skip"

    in_dtype = inputs.dtype.base_dtype
    param_dtype = tf.float32 if in_dtype in (tf.float16, tf.bfloat16) else in_dtype
    beta = tfv1.get_variable("beta", [num_chan], dtype=param_dtype,
                             initializer=beta_initializer or tfv1.zeros_initializer()) if center else None
    gamma = tfv1.get_variable("gamma", [num_chan], dtype=param_dtype,
                              initializer=gamma_initializer or tfv1.ones_initializer()) if scale else None
    colls = [tfv1.GraphKeys.GLOBAL_VARIABLES, tfv1.GraphKeys.MODEL_VARIABLES]
    moving_mean = tfv1.get_variable("mean/EMA", [num_chan], dtype=param_dtype, trainable=False,
                                    initializer=tfv1.zeros_initializer(), collections=colls)
    moving_var = tfv1.get_variable("variance/EMA", [num_chan], dtype=param_dtype, trainable=False,
                                   initializer=tfv1.ones_initializer(), collections=colls)
    beta_t = beta if beta is not None else tf.zeros([num_chan], dtype=param_dtype)
    gamma_t = gamma if gamma is not None else tf.ones([num_chan], dtype=param_dtype)

    fused = ndims == 4 and in_dtype in _FUSED_DTYPES
    batch_mean = batch_var = None
    if training and virtual_batch_size is not None:
        out, batch_mean, batch_var = _virtual_batch_norm(layer, inputs, axis, virtual_batch_size,
                                                         gamma_t, beta_t, epsilon)
    elif training:
        if fused:
            out, batch_mean, batch_var = tfv1.nn.fused_batch_norm(
                inputs, gamma_t, beta_t, epsilon=max(epsilon, FUSED_MIN_EPSILON), data_format=fmt,
                is_training=True)
        else:
            axes = [a for a in range(ndims) if a != axis]
            batch_mean, biased_var = tf.nn.moments(inputs, axes)
            if ndims == 4:   # non-fused 4-D (float64): reproduce the fused kernel's quirks
                n = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), in_dtype)
                batch_var = biased_var * n / tf.maximum(n - 1, 1)
                eps = max(epsilon, FUSED_MIN_EPSILON)
            else:
                batch_var, eps = biased_var, epsilon
            out = tf.nn.batch_normalization(inputs, _bshape(batch_mean, ndims, axis),
                                            _bshape(biased_var, ndims, axis), _bshape(beta_t, ndims, axis),
                                            _bshape(gamma_t, ndims, axis), eps)
    else:
        if fused:
            out, _, _ = tfv1.nn.fused_batch_norm(inputs, gamma_t, beta_t, mean=moving_mean,
                                                 variance=moving_var, epsilon=max(epsilon, FUSED_MIN_EPSILON),
                                                 data_format=fmt,
                                                 is_training=False)
        else:
            eps = max(epsilon, FUSED_MIN_EPSILON) if ndims == 4 else epsilon
            out = tf.nn.batch_normalization(inputs, *(_bshape(t, ndims, axis) for t in
                                                      (moving_mean, moving_var, beta_t, gamma_t)), eps)

    if do_ema_update:
        ups = [_ema_update(moving_mean, batch_mean, momentum, "mean_ema_op"),
               _ema_update(moving_var, batch_var, momentum, "var_ema_op")]
        if ema_update == "internal":
            with tf.control_dependencies(ups):
                out = tf.identity(out, name="output")
        else:
            for op in ups:
                tfv1.add_to_collection(tfv1.GraphKeys.UPDATE_OPS, op)
            out = tf.identity(out, name="output")
    else:
        out = tf.identity(out, name="output")
    return U.set_variables(out, mean=moving_mean, moving_mean=moving_mean, variance=moving_var,
                           moving_variance=moving_var, gamma=gamma, beta=beta)


def _bshape(t, ndims, axis):
    """Reshape a [C] vector to broadcast against the input."""
    if ndims == 2 or axis == ndims - 1:
        return t
    shape = [1] * ndims
    shape[axis] = -1
    return tf.reshape(t, shape)


def _virtual_batch_norm(layer, x, axis, vbs, gamma, beta, epsilon):
    if not isinstance(vbs, int) or vbs <= 0:
        raise ValueError(f"{layer}: virtual_batch_size must be a positive int, got {vbs!r}")
    ndims = x.shape.rank
    n = x.shape[0]
    if n is not None and n % vbs != 0:
        raise ValueError(f"{layer}: batch size {n} must be divisible by virtual_batch_size {vbs}")
    dyn = tf.shape(x)
    rest = [x.shape[i] if x.shape[i] is not None else dyn[i] for i in range(1, ndims)]
    xv = tf.reshape(x, tf.stack([-1, vbs, *rest]))         # (N/V, V, ...)
    red_axes = [a + 1 for a in range(ndims) if a != axis]   # V and the non-channel axes
    mean, var = tf.nn.moments(xv, red_axes, keepdims=True)
    shape = [1] * (ndims + 1)
    shape[axis + 1] = -1
    out = (xv - mean) * tf.math.rsqrt(var + epsilon) * tf.reshape(gamma, shape) + tf.reshape(beta, shape)
    out = tf.reshape(out, dyn)
    out.set_shape(x.shape)
    return out, tf.reshape(mean[0], [-1]), tf.reshape(var[0], [-1])

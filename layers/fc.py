"""FullyConnected."""
from __future__ import annotations

import numpy as np

from . import _utils as U
from ._compat import tf, tfv1
from .registry import layer_register

__all__ = ["FullyConnected"]


def batch_flatten(x):
    """[N, ...] -> [N, prod(...)], in the input's own memory order (C,H,W for NCHW)."""
    shape = x.shape.as_list()[1:]
    if None not in shape:
        return tf.reshape(x, [-1, int(np.prod(shape))])
    return tf.reshape(x, tf.stack([tf.shape(x)[0], -1]))


@layer_register(log_shape=True, positional=("units",), renames={"out_dim": "units"})
def FullyConnected(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
                   bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
                   activity_regularizer=None):
    """Fully connected layer, tensorpack's ``FullyConnected``.

    The input is flattened to [N, D] first (static reshape when all non-batch dims are known).

    Args:
        units: output size (old name ``out_dim``).
        activation: applied before the output identity (old name ``nl``).
        kernel_initializer: default untruncated normal, std sqrt(2 / D) (old name ``W_init``);
        bias_initializer: default zeros (old name ``b_init``).

    Returns:
        ``<name>/output``: [N, units], post-activation.

    Variable Names:
        * ``W``: [D, units]
        * ``b``: [units] (if use_bias)
    """
    layer = "FullyConnected"
    if not isinstance(units, int) or units <= 0:
        raise ValueError(f"{layer}: units must be a positive int, got {units!r}")
    if inputs.shape.rank is None or inputs.shape.rank < 2:
        raise ValueError(f"{layer}: input must have rank >= 2 (batch first), got shape {inputs.shape}")
    x = batch_flatten(inputs)
    in_dim = x.shape[1]
    if in_dim is None:
        raise ValueError(f"{layer}: the flattened input size must be known statically, got shape {inputs.shape}")
    dtype = inputs.dtype.base_dtype
    W = tfv1.get_variable("W", [int(in_dim), units], dtype=dtype,
                          initializer=kernel_initializer or U.default_kernel_initializer())
    U.add_regularizer(W, kernel_regularizer)
    out = tf.matmul(x, W)
    b = None
    if use_bias:
        b = tfv1.get_variable("b", [units], dtype=dtype, initializer=bias_initializer or tfv1.zeros_initializer())
        U.add_regularizer(b, bias_regularizer)
        out = tf.nn.bias_add(out, b)
    out = U.finish(out, activation, activity_regularizer)
    return U.set_variables(out, W=W, b=b)

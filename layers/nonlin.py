"""BNReLU, PReLU, Maxout."""
from __future__ import annotations

import warnings

from ._compat import tf, tfv1
from ._utils import set_variables
from .batch_norm import BatchNorm
from .registry import layer_register

__all__ = ["BNReLU", "PReLU", "Maxout"]


@layer_register(use_scope=None)
def BNReLU(x, name=None, _scoped=False):
    """``BatchNorm('bn', x)`` followed by ReLU; usable as an activation (``activation=BNReLU``).

    Variables are ``<scope>/bn/{beta,gamma,mean/EMA,variance/EMA}``. Called with a name
    (``BNReLU('bnrelu', x)``) the result is ``bnrelu/output``; as an activation it is the Relu op
    inside the calling layer's scope (which names its own output).
    """
    if name is not None:
        warnings.warn("BNReLU(name=) is deprecated; pass the scope name as the first argument",
                      DeprecationWarning, stacklevel=3)
    x = BatchNorm("bn", x)
    return tf.nn.relu(x, name="output" if _scoped else None)


@layer_register(positional=("init",))
def PReLU(x, init=0.001, name=None):
    """Parametric ReLU: ``0.5 * ((1 + alpha) * x + (1 - alpha) * |x|)``.

    Returns: ``<name>/output`` (tensorpack's tensor was ``<name>/Mul_2``; same values).

    Variable Names: ``alpha``: scalar, initialised to ``init``.
    """
    if name is not None:
        warnings.warn("PReLU(name=) is deprecated", DeprecationWarning, stacklevel=3)
    alpha = tfv1.get_variable("alpha", [], dtype=x.dtype.base_dtype,
                              initializer=tfv1.constant_initializer(init))
    out = 0.5 * ((1 + alpha) * x + (1 - alpha) * tf.abs(x))
    return set_variables(tf.identity(out, name="output"), alpha=alpha)


@layer_register(use_scope=None, positional=("num_unit",))
def Maxout(x, num_unit):
    """Maxout over groups of ``num_unit`` channels (last axis; input [N, C] or NHWC).

    Returns ``output`` of shape [..., C / num_unit]. (tensorpack's reshape used true division and
    failed on Python 3; this uses integer division.)
    """
    if not isinstance(num_unit, int) or num_unit <= 0:
        raise ValueError(f"Maxout: num_unit must be a positive int, got {num_unit!r}")
    ndim = x.shape.rank
    if ndim not in (2, 4):
        raise ValueError(f"Maxout: input must be 2-D or 4-D (NHWC), got shape {x.shape}")
    ch = x.shape[-1]
    if ch is None or ch % num_unit != 0:
        raise ValueError(f"Maxout: channels ({ch}) must be known and divisible by num_unit ({num_unit})")
    groups = int(ch) // num_unit
    if ndim == 4:
        dyn = tf.shape(x)
        dims = [x.shape[i] if x.shape[i] is not None else dyn[i] for i in range(3)]
        y = tf.reshape(x, tf.stack([*dims, groups, num_unit]))
    else:
        y = tf.reshape(x, [-1, groups, num_unit])
    out = tf.reduce_max(y, axis=ndim, name="output")
    return out

"""Argument checks and small ops shared by the layer modules (private)."""
from __future__ import annotations

from ._compat import tf, tfv1

_FORMATS = {"NHWC": "NHWC", "channels_last": "NHWC", "NCHW": "NCHW", "channels_first": "NCHW"}


def data_format(layer: str, value) -> str:
    """Canonical 'NHWC'/'NCHW' from tensorpack's or Keras' spelling."""
    try:
        return _FORMATS[value]
    except (KeyError, TypeError):
        raise ValueError(f"{layer}: Unknown data_format {value!r}; expected one of "
                         "'NHWC', 'NCHW', 'channels_last', 'channels_first'") from None


def padding(layer: str, value) -> str:
    if not isinstance(value, str) or value.upper() not in ("SAME", "VALID"):
        raise ValueError(f"{layer}: unknown padding {value!r}; expected 'same' or 'valid' (any case)")
    return value.upper()


def shape2d(layer: str, arg: str, value) -> list:
    """int -> [v, v]; a pair -> list; anything else is an error naming the argument."""
    if isinstance(value, bool):
        raise TypeError(f"{layer}: {arg} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return list(value)
    raise TypeError(f"{layer}: {arg} must be an int or a pair of ints, got {value!r}")


def positive(layer: str, arg: str, values):
    if any(v <= 0 for v in values):
        raise ValueError(f"{layer}: {arg} must be positive, got {values}")


def channel_axis(fmt: str) -> int:
    return 1 if fmt == "NCHW" else 3


def static_channels(layer: str, x, fmt: str) -> int:
    if x.shape.rank != 4:
        raise ValueError(f"{layer}: expected a 4-D input ({fmt}), got shape {x.shape}")
    c = x.shape[channel_axis(fmt)]
    if c is None:
        raise ValueError(f"{layer}: the number of input channels must be known statically, got shape {x.shape}")
    return int(c)


def to_nhwc(x):
    return tf.transpose(x, [0, 2, 3, 1])


def to_nchw(x):
    return tf.transpose(x, [0, 3, 1, 2])


def default_kernel_initializer():
    """tensorpack (TF >= 1.13): untruncated normal, std = sqrt(2 / fan_in)."""
    return tfv1.variance_scaling_initializer(scale=2.0, mode="fan_in", distribution="untruncated_normal")


def add_regularizer(var_or_tensor, regularizer):
    if regularizer is not None:
        loss = regularizer(var_or_tensor)
        if loss is not None:
            tfv1.add_to_collection(tfv1.GraphKeys.REGULARIZATION_LOSSES, loss)


def finish(layer_out, activation, activity_regularizer=None):
    """activation -> activity regularizer -> identity named 'output' (tensorpack's layer tail)."""
    if activation is not None:
        layer_out = activation(layer_out)
    add_regularizer(layer_out, activity_regularizer)
    return tf.identity(layer_out, name="output")


def set_variables(tensor, **variables):
    from .registry import VariableHolder

    tensor.variables = VariableHolder(**{k: v for k, v in variables.items() if v is not None})
    return tensor

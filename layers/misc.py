"""Dropout and ConcatWith."""
from __future__ import annotations

import warnings

from ._compat import tf
from .registry import layer_register
from .tower import require_tower_context

__all__ = ["Dropout", "ConcatWith"]


@layer_register(use_scope=None, positional=("keep_prob",), renames={"is_training": "training"})
def Dropout(x, keep_prob=None, *, rate=None, training=None, noise_shape=None, seed=None):
    """Dropout with tensorpack's argument conventions.

    Trap kept for compatibility: the first positional argument (and ``keep_prob=``) is the
    probability to KEEP; ``rate=`` is the probability to DROP (default 0.5). A positional value
    other than 0.5 warns. ``training`` defaults to the tower's ``is_training`` (old name
    ``is_training``). At inference the input is returned unchanged (no op added).
    ``noise_shape`` and ``seed`` are honoured (tensorpack silently dropped them). ``rate`` may
    be a scalar tensor (passed to ``tf.nn.dropout`` unchecked), as tensorpack allows.
    """
    if keep_prob is not None and rate is not None:
        raise ValueError(f"Dropout: give either keep_prob ({keep_prob}) or rate ({rate}), not both")
    if keep_prob is not None:
        if keep_prob != 0.5:
            warnings.warn("Dropout: the first positional argument (keep_prob) is the probability to KEEP, "
                          "not to drop; use rate= to pass the drop probability", UserWarning, stacklevel=3)
        rate = 1.0 - keep_prob
    if rate is None:
        rate = 0.5
    symbolic = isinstance(rate, (tf.Tensor, tf.Variable))    # e.g. cifar-convnet's tf.constant(0.5 if training else 0.)
    if not symbolic and not (0.0 <= float(rate) < 1.0):
        raise ValueError(f"Dropout: drop rate must be in [0, 1), got {rate}")
    if training is None:
        training = require_tower_context("Dropout").is_training
    if not isinstance(training, bool):
        raise TypeError(f"Dropout: training must be a Python bool, got {training!r}")
    if not training or (not symbolic and rate == 0):
        return x
    return tf.nn.dropout(x, rate=rate, noise_shape=noise_shape, seed=seed)


@layer_register(use_scope=None, positional=("tensor", "dim"))
def ConcatWith(x, tensor, dim):
    """``tf.concat([x] + tensor, dim)``; ``tensor`` is a tensor or a list of tensors."""
    if not isinstance(tensor, (list, tuple)):
        tensor = [tensor]
    return tf.concat([x, *tensor], dim)

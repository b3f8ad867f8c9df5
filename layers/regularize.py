"""Weight regularisation: ``regularize_cost``, ``l2_regularizer``, ``l1_regularizer``."""
from __future__ import annotations

import logging
import re

from ._compat import tf, tfv1
from .tower import require_tower_context

__all__ = ["regularize_cost", "regularize_cost_from_collection", "l2_regularizer", "l1_regularizer"]

logger = logging.getLogger("layers")


def l2_regularizer(scale):
    """``scale * sum(w ** 2) / 2`` (the TF1 contrib convention tensorpack uses)."""
    scale = float(scale)

    def f(w):
        return tf.multiply(tf.nn.l2_loss(w), scale, name="l2_regularizer")  # scale takes w's dtype
    return f


def l1_regularizer(scale):
    """``scale * sum(|w|)``."""
    scale = float(scale)

    def f(w):
        return tf.multiply(tf.reduce_sum(tf.abs(w)), scale, name="l1_regularizer")
    return f


def regularize_cost(regex, func, name="regularize_cost"):
    """Sum ``func(v)`` over the trainable variables whose name matches ``regex`` (``re.search``).

    Needs a TowerContext; in an inference tower (or with no match) it is a constant 0 named
    ``empty_<name>``. Example: ``regularize_cost('.*/W', l2_regularizer(1e-4))``.
    """
    if not isinstance(regex, str) or not regex:
        raise ValueError(f"regularize_cost: regex must be a non-empty str, got {regex!r}")
    ctx = require_tower_context("regularize_cost")
    if not ctx.is_training:
        return tf.constant(0, dtype=tf.float32, name="empty_" + name)
    if ctx.has_own_variables:
        params = ctx.get_collection_in_tower(tfv1.GraphKeys.TRAINABLE_VARIABLES)
    else:
        params = tfv1.trainable_variables()
    costs, names = [], []
    with tfv1.name_scope(name + "_internals"):
        for p in params:
            if re.search(regex, p.op.name):
                costs.append(tf.cast(func(p), tf.float32))
                names.append(p.op.name)
    if not costs:
        return tf.constant(0, dtype=tf.float32, name="empty_" + name)
    logger.info("regularize_cost %r applies to: %s", regex, ", ".join(names))
    return tf.add_n(costs, name=name)


def regularize_cost_from_collection(name="regularize_cost"):
    """Sum of ``REGULARIZATION_LOSSES`` added in this tower (0 in inference)."""
    ctx = require_tower_context("regularize_cost_from_collection")
    if not ctx.is_training:
        return tf.constant(0, dtype=tf.float32, name="empty_" + name)
    losses = ctx.get_collection_in_tower(tfv1.GraphKeys.REGULARIZATION_LOSSES)
    if not losses:
        return tf.constant(0, dtype=tf.float32, name="empty_" + name)
    return tf.add_n([tf.cast(x, tf.float32) for x in losses], name=name)

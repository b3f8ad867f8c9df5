"""Summaries, as ``tensorpack.tfutils.summary``.

:func:`add_moving_summary` keeps an exponential moving average of scalar tensors (updated every
step by the trainer's ``MovingAverageSummary`` callback) and summarises it under the tensor's op
name, so ``cross_entropy_loss`` shows up in TensorBoard, ``stats.json`` and the epoch printout.
All of these are no-ops outside the main training tower.
"""
from __future__ import annotations

import io
import re

import numpy as np

from .._compat import tf, tfv1
from ..tower import MOVING_SUMMARY_OPS_KEY, get_current_tower_context
from ..utils import logger

__all__ = ["add_tensor_summary", "add_param_summary", "add_activation_summary", "add_moving_summary",
           "create_scalar_summary", "create_image_summary", "MOVING_SUMMARY_OPS_KEY"]

_TOWER_PREFIX = re.compile(r"tower[0-9]+/")


def _not_main_tower() -> bool:
    ctx = get_current_tower_context()
    return ctx is not None and not ctx.is_main_training_tower


def create_scalar_summary(name: str, v) -> tfv1.Summary:
    """A ``tf.compat.v1.Summary`` holding one scalar."""
    if not isinstance(name, str):
        raise TypeError(f"create_scalar_summary: name must be a str, got {type(name).__name__}")
    s = tfv1.Summary()
    s.value.add(tag=name, simple_value=float(v))
    return s


def create_image_summary(name: str, val: np.ndarray) -> tfv1.Summary:
    """A Summary with PNG images from an NHWC array in [0, 255] (C = 1, 3 RGB or 4 RGBA)."""
    from PIL import Image

    n, h, w, c = val.shape
    s = tfv1.Summary()
    for k in range(n):
        arr = np.clip(val[k], 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr[:, :, 0] if c == 1 else arr).save(buf, format="PNG")
        img = tfv1.Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=buf.getvalue())
        s.value.add(tag=name if n == 1 else f"{name}/{k}", image=img)
    return s


def _rms(x):
    return tf.sqrt(tf.reduce_mean(tf.square(x)), name="rms")


def add_tensor_summary(x, types, name=None, collections=None, main_tower_only=True):
    """Summarise ``x`` by each of ``types``: ``scalar``, ``histogram``, ``sparsity``, ``mean``, ``rms``
    (tags ``<name>-summary``, ``-histogram``, ``-sparsity``, ``-mean``, ``-rms``; name defaults to
    the op name)."""
    if main_tower_only and _not_main_tower():
        return
    name = name or x.op.name
    makers = {
        "scalar": lambda: tfv1.summary.scalar(name + "-summary", x, collections=collections),
        "histogram": lambda: tfv1.summary.histogram(name + "-histogram", x, collections=collections),
        "sparsity": lambda: tfv1.summary.scalar(name + "-sparsity", tf.nn.zero_fraction(x), collections=collections),
        "mean": lambda: tfv1.summary.scalar(name + "-mean", tf.reduce_mean(x), collections=collections),
        "rms": lambda: tfv1.summary.scalar(name + "-rms", _rms(x), collections=collections),
    }
    unknown = set(types) - set(makers)
    if unknown:
        raise ValueError(f"add_tensor_summary: unknown summary types {sorted(unknown)}; "
                         f"expected some of {sorted(makers)}")
    for t in set(types):
        makers[t]()


def add_activation_summary(x, types=None, name=None, collections=None):
    """:func:`add_tensor_summary` of an activation (default sparsity, rms, histogram) under the
    ``activation-summary`` name scope."""
    if x.shape.ndims is not None and x.shape.ndims < 2:
        logger.warning("Cannot summarize scalar activation %s", x.name)
        return
    with tfv1.name_scope("activation-summary"):
        add_tensor_summary(x, types or ["sparsity", "rms", "histogram"], name=name, collections=collections)


def add_param_summary(*summary_lists, collections=None):
    """Summarise trainable variables: each argument is ``(regex, [types])``; the regex must match the
    whole variable op name, e.g. ``add_param_summary(('.*/W', ['histogram', 'rms']))``."""
    if _not_main_tower():
        return
    params = tfv1.get_collection(tfv1.GraphKeys.TRAINABLE_VARIABLES)
    with tfv1.name_scope("param-summary"):
        for p in params:
            for rgx, actions in summary_lists:
                if re.match(rgx if rgx.endswith("$") else rgx + "$", p.op.name):
                    add_tensor_summary(p, actions, name=p.op.name, collections=collections)


def _ema_variable(name, dtype):
    # LOCAL variables: moving summaries are not model state, checkpoints don't carry them.
    return tfv1.get_variable(name, shape=[], dtype=dtype, initializer=tfv1.zeros_initializer(), trainable=False,
                             collections=[tfv1.GraphKeys.LOCAL_VARIABLES])


def add_moving_summary(*args, decay=0.95, collection=MOVING_SUMMARY_OPS_KEY, summary_collections=None):
    """Keep a zero-debiased exponential moving average (``decay``, default 0.95) of each scalar
    tensor and summarise it as ``<op name>`` (``tower<k>/`` prefixes removed).

    Args:
        args: scalar tensors.
        decay: EMA decay.
        collection: collection for the EMA update ops (the default is run every step by
            ``MovingAverageSummary``); None leaves running them to the caller.
        summary_collections: collections for the summary ops (default ``SUMMARIES``).

    Returns: the EMA update tensors (their value is the debiased average), [] outside the main
    training tower or under ``reuse=True``.
    """
    if _not_main_tower():
        return []
    if tfv1.get_variable_scope().reuse is True:
        logger.warning("add_moving_summary() called under reuse=True scope, ignored.")
        return []
    for x in args:
        if not isinstance(x, (tf.Tensor, tf.Variable)) or x.shape.ndims != 0:
            raise ValueError(f"add_moving_summary: only scalar tensors are accepted, got {x!r}")
    ema_ops = []
    for c in args:
        name = _TOWER_PREFIX.sub("", c.op.name)
        with tfv1.get_default_graph().name_scope(None):
            if not c.dtype.is_floating:
                c = tf.cast(c, tf.float32)
            dtype = c.dtype.base_dtype
            with tfv1.variable_scope(tfv1.VariableScope(reuse=tfv1.AUTO_REUSE, name="")), \
                    tfv1.variable_scope("EMA", auxiliary_name_scope=False):
                biased = _ema_variable(name + "/biased", dtype)
                count = _ema_variable(name + "/local_step", dtype)
            with tfv1.name_scope(f"EMA/{name}_EMA_apply"):
                new_biased = tfv1.assign(biased, biased * decay + c * (1.0 - decay))
                new_count = tfv1.assign_add(count, 1.0)
                ema = tf.divide(new_biased, 1.0 - tf.pow(tf.cast(decay, dtype), new_count), name="debiased")
            ema_ops.append(ema)
            tfv1.summary.scalar(name + "-summary", ema, collections=summary_collections)
    if collection is not None:
        for op in ema_ops:
            tfv1.add_to_collection(collection, op)
    return ema_ops

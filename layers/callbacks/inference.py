"""Inferencers: what ``InferenceRunner`` computes over a validation set.

Stat names follow tensorpack: ``ScalarStats('cost')`` gives ``validation_cost`` (``prefix='val'``
gives ``val_cost``); ``ClassificationError('wrong_vector')`` gives ``validation_error`` (its second
argument names the stat).
"""
from __future__ import annotations

import numpy as np

from ..tfutils.common import get_op_tensor_name
from ..utils import logger
from .base import Callback

__all__ = ["Inferencer", "ScalarStats", "ClassificationError", "BinaryClassificationStats"]


class Inferencer(Callback):
    """Base class. ``_get_fetches()`` names the tensors needed per batch, ``_on_fetches(values)``
    receives them, ``_after_inference()`` returns ``{stat name: scalar}`` for the monitors."""

    def _before_epoch(self):
        self._before_inference()

    def _before_inference(self):
        pass

    def _trigger_epoch(self):
        ret = self._after_inference()
        if ret is None:
            return
        for k, v in ret.items():
            try:
                v = float(v)
            except (TypeError, ValueError):
                logger.warning("%s returns a non-scalar statistic %s!", type(self).__name__, k)
                continue
            self.trainer.monitors.put_scalar(k, v)

    def _after_inference(self):
        return None

    def get_fetches(self):
        """Tensor names (``x:0``) this inferencer needs."""
        return [get_op_tensor_name(n)[1] for n in self._get_fetches()]

    def _get_fetches(self):
        raise NotImplementedError

    def on_fetches(self, results):
        self._on_fetches(results)

    def _on_fetches(self, results):
        raise NotImplementedError


class ScalarStats(Inferencer):
    """The mean over batches of scalar tensors, reported as ``<prefix>_<op name>``.

    Args:
        names: a tensor name or a list of them (each a scalar per batch).
        prefix: default ``'validation'``; empty for the bare name.

    Note: a mean of per-batch means; with a smaller last batch it differs slightly from the
    dataset mean (use :class:`ClassificationError` for an exact error rate).
    """

    def __init__(self, names, prefix="validation"):
        self.names = list(names) if isinstance(names, (list, tuple)) else [names]
        self.prefix = prefix

    def _before_inference(self):
        self.stats = []

    def _get_fetches(self):
        return self.names

    def _on_fetches(self, output):
        self.stats.append(output)

    def _after_inference(self):
        ret = {}
        if not self.stats:
            return ret
        means = np.mean(np.asarray(self.stats, dtype=np.float64), axis=0)
        for stat, name in zip(means, self.names, strict=True):
            opname = get_op_tensor_name(name)[0]
            ret[f"{self.prefix}_{opname}" if self.prefix else opname] = stat
        return ret


class ClassificationError(Inferencer):
    """The exact error rate over the whole set from a per-example 0/1 ``wrong`` vector
    (``tf.cast(tf.logical_not(tf.nn.in_top_k(...)), tf.float32)``): total wrong / total examples.
    A "correct" vector gives the accuracy instead.

    Args:
        wrong_tensor_name: the vector's name (default ``'incorrect_vector'``).
        summary_name: the stat's name (default ``'validation_error'``).
    """

    def __init__(self, wrong_tensor_name="incorrect_vector", summary_name="validation_error"):
        self.wrong_tensor_name = wrong_tensor_name
        self.summary_name = summary_name

    def _before_inference(self):
        self._wrong = 0.0
        self._total = 0

    def _get_fetches(self):
        return [self.wrong_tensor_name]

    def _on_fetches(self, outputs):
        vec = np.asarray(outputs[0])
        if vec.ndim != 1:
            raise ValueError(f"ClassificationError: {self.wrong_tensor_name} must be a vector, got shape {vec.shape}")
        self._wrong += float(np.sum(vec))
        self._total += len(vec)

    def _after_inference(self):
        return {self.summary_name: self._wrong / self._total if self._total else 0.0}


class BinaryClassificationStats(Inferencer):
    """Precision and recall (``<prefix>_precision``, ``<prefix>_recall``) from 0/1 prediction and label tensors."""

    def __init__(self, pred_tensor_name, label_tensor_name, prefix="val"):
        self.pred_tensor_name = pred_tensor_name
        self.label_tensor_name = label_tensor_name
        self.prefix = prefix

    def _before_inference(self):
        self._tp = self._pred_pos = self._label_pos = 0

    def _get_fetches(self):
        return [self.pred_tensor_name, self.label_tensor_name]

    def _on_fetches(self, outputs):
        pred, label = (np.asarray(x).astype(bool) for x in outputs)
        self._tp += int(np.sum(pred & label))
        self._pred_pos += int(np.sum(pred))
        self._label_pos += int(np.sum(label))

    def _after_inference(self):
        return {self.prefix + "_precision": self._tp / self._pred_pos if self._pred_pos else 0.0,
                self.prefix + "_recall": self._tp / self._label_pos if self._label_pos else 0.0}

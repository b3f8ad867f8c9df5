"""Summary callbacks: maintain moving averages (``MovingAverageSummary``) and evaluate
``tf.summary`` ops for the monitors (``MergeAllSummaries``)."""
from __future__ import annotations

import collections

import numpy as np

from .._compat import tf, tfv1
from ..tfutils.common import get_op_tensor_name
from ..tower import MOVING_SUMMARY_OPS_KEY
from ..utils import logger
from .base import Callback

__all__ = ["MovingAverageSummary", "MergeAllSummaries", "SimpleMovingAverage"]


class MovingAverageSummary(Callback):
    """Run the moving-average updates of :func:`add_moving_summary` with every step (a default callback).

    Args:
        collection: the collection of update ops.
        train_op: instead of a per-step fetch, make this op (or op name) depend on the updates.
    """

    def __init__(self, collection=MOVING_SUMMARY_OPS_KEY, train_op=None):
        self._collection = collection
        self._train_op = train_op

    def _setup_graph(self):
        ops = [k.op for k in tfv1.get_collection(self._collection)]
        if self._train_op is None:
            logger.info("[MovingAverageSummary] %d operations in collection '%s' will be run with session hooks.",
                        len(ops), self._collection)
            self._fetch = tfv1.train.SessionRunArgs(fetches=tf.group(*ops, name="maintain_moving_average_summary"))
        else:
            op = self._train_op
            if isinstance(op, tf.Tensor):
                op = op.op
            if not isinstance(op, tf.Operation):
                op = self.graph.get_operation_by_name(op)
            op._add_control_inputs(ops)
            self._fetch = None

    def _before_run(self, _):
        return self._fetch


class _MergeAllSummariesRunWithOp(Callback):
    def __init__(self, period, key):
        self._period = period
        self._key = key

    def _setup_graph(self):
        logger.info("Summarizing collection '%s' of size %d.", self._key, len(tfv1.get_collection(self._key)))
        self.summary_op = tfv1.summary.merge_all(self._key)
        self._fetches = tfv1.train.SessionRunArgs(self.summary_op) if self.summary_op is not None else None

    def _need_run(self):
        if self.local_step == self.trainer.steps_per_epoch - 1:
            return True
        return self._period > 0 and (self.local_step + 1) % self._period == 0

    def _before_run(self, _):
        return self._fetches if self._need_run() else None

    def _after_run(self, _, run_values):
        if run_values.results is not None:
            self.trainer.monitors.put_summary(run_values.results)


class _MergeAllSummariesRunAlone(_MergeAllSummariesRunWithOp):
    def _before_run(self, _):
        return None

    def _trigger_step(self):
        if self._period and (self.local_step + 1) % self._period == 0:
            self._trigger()

    def _trigger(self):
        if self.summary_op is not None:
            self.trainer.monitors.put_summary(tfv1.get_default_session().run(self.summary_op))


def MergeAllSummaries(period=0, run_alone=False, key=None):
    """Evaluate ``tf.summary.merge_all(key)`` and hand the result to the monitors (a default callback).

    Args:
        period: 0 (default): once per epoch, along with its last step; k > 0: also every k steps.
        run_alone: evaluate after the epoch in a separate run (only for summaries that do not
            depend on the training inputs) instead of with the last step.
        key: the summary collection (default ``SUMMARIES``).
    """
    key = key or tfv1.GraphKeys.SUMMARIES
    cls = _MergeAllSummariesRunAlone if run_alone else _MergeAllSummariesRunWithOp
    return cls(int(period), key)


class SimpleMovingAverage(Callback):
    """Every ``window_size`` global steps, put ``<name>/SMA``: the mean of scalar tensors over the
    last ``window_size`` steps."""

    def __init__(self, tensors, window_size):
        tensors = [tensors] if isinstance(tensors, str) else list(tensors)
        self._tensor_names = [get_op_tensor_name(x)[1] for x in tensors]
        self._display_names = [get_op_tensor_name(x)[0] for x in tensors]
        self._window = int(window_size)
        self._queue = collections.deque(maxlen=self._window)

    def _setup_graph(self):
        tensors = self.get_tensors_maybe_in_tower(self._tensor_names)
        for t in tensors:
            if t.shape.ndims != 0:
                raise ValueError(f"SimpleMovingAverage only accepts scalar tensors, got {t}")
        self._fetch = tfv1.train.SessionRunArgs(fetches=tensors)

    def _before_run(self, _):
        return self._fetch

    def _after_run(self, _, run_values):
        self._queue.append(run_values.results)

    def _trigger_step(self):
        if self.global_step % self._window == 0:
            for name, avg in zip(self._display_names, np.asarray(self._queue).mean(axis=0), strict=True):
                self.trainer.monitors.put_scalar(name + "/SMA", avg)

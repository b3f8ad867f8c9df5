"""Per-step callbacks: the global step counter, the tqdm ``ProgressBar``, ``TensorPrinter``."""
from __future__ import annotations

from .._compat import tfv1
from ..tfutils.common import get_global_step_var, get_op_tensor_name
from ..utils import logger
from ..utils.utils import get_tqdm_kwargs
from .base import Callback

__all__ = ["TensorPrinter", "ProgressBar", "MaintainStepCounter", "SessionRunTimeout"]


class TensorPrinter(Callback):
    """Log the value of some tensors after every step."""

    def __init__(self, names):
        self._names = [get_op_tensor_name(n)[1] for n in names]

    def _setup_graph(self):
        self._fetches = self.get_tensors_maybe_in_tower(self._names)

    def _before_run(self, _):
        return self._fetches

    def _after_run(self, _, vals):
        for n, v in zip(self._names, vals.results, strict=True):
            logger.info("%s: %s", n, v)


class ProgressBar(Callback):
    """A tqdm bar per epoch (one of the default callbacks).

    Args:
        names: scalar tensors to show on the bar, refreshed every step.
    """

    _chief_only = False

    def __init__(self, names=()):
        self._names = [get_op_tensor_name(n)[1] for n in names]
        self._tags = [get_op_tensor_name(n)[0].split("/")[-1] for n in names]
        self._bar = None

    def _before_train(self):
        from tqdm import tqdm

        self._tqdm = tqdm
        self._last_updated = self.local_step
        self._total = self.trainer.steps_per_epoch
        self._tqdm_args = get_tqdm_kwargs(leave=True)
        self._fetches = self.get_tensors_maybe_in_tower(self._names) or None
        if self._fetches:
            for t in self._fetches:
                if t.shape.ndims != 0:
                    raise ValueError(f"ProgressBar can only show scalars, not {t}")
            self._fetches = tfv1.train.SessionRunArgs(self._fetches)
            self._tqdm_args["bar_format"] += "{postfix} "

    def _before_epoch(self):
        self._bar = self._tqdm(total=self._total, **self._tqdm_args)

    def _after_epoch(self):
        self._bar.close()

    def _before_run(self, _):
        if self.local_step != self._last_updated:    # once per step, not per extra hooked run
            self._last_updated = self.local_step
            return self._fetches
        return None

    def _after_run(self, _, run_values):
        if run_values.results:
            self._bar.set_postfix(zip(self._tags, run_values.results, strict=True))

    def _trigger_step(self):
        self._bar.update()

    def _after_train(self):
        if self._bar is not None:
            self._bar.close()


class MaintainStepCounter(Callback):
    """Increment ``global_step`` with every training step (the trainer always adds it)."""

    _chief_only = False

    def _setup_graph(self):
        gs = get_global_step_var()
        with tfv1.name_scope(None):
            self.gs_incr_op = tfv1.assign_add(gs, 1, name="global_step_incr").op
        self._fetches = tfv1.train.SessionRunArgs(self.gs_incr_op)

    def _before_train(self):
        if self.global_step != 0:
            logger.info("Start training with global_step=%d", self.global_step)

    def _before_run(self, _):
        return self._fetches

    def _after_run(self, _, __):
        self.trainer.loop._global_step += 1


class SessionRunTimeout(Callback):
    """Give every training step a deadline: a step running longer than ``timeout_in_ms`` fails with
    ``DeadlineExceededError`` (ending training)."""

    def __init__(self, timeout_in_ms):
        self._runargs = tfv1.train.SessionRunArgs(fetches=[], options=tfv1.RunOptions(timeout_in_ms=int(timeout_in_ms)))

    def _before_run(self, _):
        return self._runargs

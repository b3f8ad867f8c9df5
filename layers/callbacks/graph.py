"""Callbacks that run graph ops: ``RunOp``, ``RunUpdateOps`` (BatchNorm statistics every step),
``ProcessTensors``, ``CheckNumerics``."""
from __future__ import annotations

from .._compat import tf, tfv1
from ..tfutils.common import get_op_tensor_name
from ..utils import logger
from .base import Callback

__all__ = ["RunOp", "RunUpdateOps", "ProcessTensors", "CheckNumerics"]


class RunOp(Callback):
    """Run an op before training, on every trigger and/or along with every step.

    Args:
        op: a ``tf.Operation``, or a function returning one (called in ``setup_graph``).
        run_before: run it once in ``before_train``. run_as_trigger: run it on every ``trigger()``
            (every epoch by default). run_step: run it with every training step.
        verbose: log each run.
    """

    _chief_only = False

    def __init__(self, op, run_before=True, run_as_trigger=True, run_step=False, verbose=False):
        self.setup_func = op if callable(op) else (lambda: op)
        self.run_before = run_before
        self.run_as_trigger = run_as_trigger
        self.run_step = run_step
        self.verbose = verbose

    def _setup_graph(self):
        self._op = self.setup_func()
        if self.run_step:
            self._fetch = tfv1.train.SessionRunArgs(fetches=self._op)

    def _run(self):
        if self.verbose:
            logger.info("Running Op %s ...", self._op.name)
        tfv1.get_default_session().run(self._op)

    def _before_train(self):
        if self.run_before:
            self._run()

    def _trigger(self):
        if self.run_as_trigger:
            self._run()

    def _before_run(self, _):
        if self.run_step:
            return self._fetch
        return None


class RunUpdateOps(RunOp):
    """Run the ops of ``collection`` (default ``UPDATE_OPS``: BatchNorm moving statistics) along with
    every training step, as tensorpack does by default. Only the main training tower adds them."""

    def __init__(self, collection=None):
        collection = collection or tfv1.GraphKeys.UPDATE_OPS
        label = "UPDATE_OPS" if collection == tfv1.GraphKeys.UPDATE_OPS else collection

        def make():
            ops = tfv1.get_collection(collection)
            if ops:
                logger.info("Applying collection %s of %d ops.", label, len(ops))
                return tf.group(*ops, name="update_ops")
            return tf.no_op(name="empty_update_ops")
        super().__init__(make, run_before=False, run_as_trigger=False, run_step=True)


class ProcessTensors(Callback):
    """Fetch tensors (by name; a tower's tensor by its tower prefix or, without one, from the first
    training tower) along with every step and call ``fn(*values)``."""

    def __init__(self, names, fn):
        if not isinstance(names, (list, tuple)):
            raise TypeError(f"ProcessTensors: names must be a list, got {names!r}")
        self._names = [get_op_tensor_name(n)[1] for n in names]   # 'cost' means the tensor 'cost:0'
        self._fn = fn

    def _setup_graph(self):
        self._fetch = tfv1.train.SessionRunArgs(fetches=self.get_tensors_maybe_in_tower(self._names))

    def _before_run(self, _):
        return self._fetch

    def _after_run(self, _, run_values):
        self._fn(*run_values.results)


class CheckNumerics(RunOp):
    """Fail (InvalidArgumentError) when a trainable variable holds NaN or Inf."""

    _chief_only = True

    def __init__(self, run_as_trigger=True, run_step=False):
        super().__init__(self._make, run_before=False, run_as_trigger=run_as_trigger, run_step=run_step)

    @staticmethod
    def _make():
        ops = [tfv1.check_numerics(v, f"CheckNumerics['{v.op.name}']").op for v in tfv1.trainable_variables()]
        return tf.group(*ops, name="CheckAllNumerics")

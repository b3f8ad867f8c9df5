"""``InferenceRunner``: after every epoch, run the inference tower over a validation DataFlow and
report the inferencers' statistics."""
from __future__ import annotations

import contextlib
import sys

from .._compat import tf, tfv1
from ..tower import PredictTowerContext
from ..utils import logger
from ..utils.utils import get_tqdm
from .base import Callback, Callbacks, HookedSession
from .inference import Inferencer

__all__ = ["InferenceRunner", "InferenceRunnerBase"]


class _InferencerToHook(tfv1.train.SessionRunHook):
    def __init__(self, inf, fetches):
        self._inf = inf
        self._fetches = fetches

    def before_run(self, _):
        return tfv1.train.SessionRunArgs(fetches=self._fetches)

    def after_run(self, _, run_values):
        self._inf.on_fetches(run_values.results)


class InferenceRunnerBase(Callback):
    """Common part: the input, the inferencers and a hooked session on the trainer's session."""

    def __init__(self, input, infs):
        self._input_source = input
        self.infs = list(infs) if isinstance(infs, (list, tuple)) else [infs]
        for v in self.infs:
            if not isinstance(v, Inferencer):
                raise TypeError(f"InferenceRunner: {v!r} is not an Inferencer")
        try:
            self._size = input.size()
        except NotImplementedError:
            self._size = 0
        self._hooks = []

    def register_hook(self, hook):
        self._hooks.append(hook)

    def _before_train(self):
        self._hooked_sess = HookedSession(self.trainer.sess, self._hooks)
        self._input_callbacks.before_train()
        if self._size > 0:
            logger.info("[InferenceRunner] Will eval %d iterations", self._size)
        else:
            logger.warning("[InferenceRunner] Got an InputSource with unknown size! Will iterate until it ends!")

    def _after_train(self):
        self._input_callbacks.after_train()


class InferenceRunner(InferenceRunnerBase):
    """Run inferencers on a DataFlow (or InputSource) with the model's inference tower.

    Args:
        input: a DataFlow (fed through ``FeedInput(ds, infinite=False)``, so one pass = ``len(ds)``
            batches) or an InputSource with an accurate ``size()``.
        infs: an Inferencer or a list (``ScalarStats``, ``ClassificationError``, ...).
        tower_name: name scope of the inference tower (each runner needs its own).
        tower_func: build function (default: the trainer's, i.e. ``ModelDesc.build_graph``).
        device: GPU index for the tower; -1 for ``/cpu:0``.
    """

    def __init__(self, input, infs, tower_name="InferenceTower", tower_func=None, device=0):
        from ..input_source import FeedInput, InputSource, is_dataflow

        if is_dataflow(input):
            input = FeedInput(input, infinite=False)
        if not isinstance(input, InputSource):
            raise TypeError(f"InferenceRunner: input must be a DataFlow or an InputSource, got {type(input).__name__}")
        self._tower_name = tower_name
        self._device_id = device
        self._tower_func = tower_func
        super().__init__(input, infs)

    def _device(self):
        from .._compat import gpu_count

        # Only pin to a GPU that exists; on a CPU-only machine TF places everything on the CPU anyway.
        if self._device_id >= 0 and gpu_count() > self._device_id:
            return f"/gpu:{self._device_id}"
        return "/cpu:0" if self._device_id < 0 else None

    def _setup_graph(self):
        if self._tower_func is None:
            self._tower_func = getattr(self.trainer, "tower_func", None)
            if self._tower_func is None:
                raise ValueError("InferenceRunner needs a trainer with a tower function (a TowerTrainer) "
                                 "or tower_func=")
        input_callbacks = self._input_source.setup(self._tower_func.input_signature)
        vs_name = self.trainer._vs_name_for_predictor(self._device_id)
        logger.info("[InferenceRunner] Building tower '%s'%s ...", self._tower_name,
                    f" with variable scope '{vs_name}'" if vs_name else "")
        device = self._device()
        with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True), \
                (tf.device(device) if device else contextlib.nullcontext()), \
                PredictTowerContext(self._tower_name, vs_name=vs_name):
            self._tower_func(*self._input_source.get_input_tensors())
            handle = self._tower_func.towers[-1]
        for inf in self.infs:
            self.register_hook(_InferencerToHook(inf, handle.get_tensors(inf.get_fetches())))
        self._input_callbacks = Callbacks(input_callbacks)
        for h in self._input_callbacks.get_hooks():
            self.register_hook(h)
        for inf in self.infs:
            inf.setup_graph(self.trainer)
        self._input_callbacks.setup_graph(self.trainer)

    def _trigger(self):
        for inf in self.infs:
            inf.before_epoch()
        self._input_source.reset_state()
        n = self._size if self._size > 0 else sys.maxsize
        with get_tqdm(total=self._size or None, leave=False) as bar:
            try:
                for _ in range(n):
                    self._hooked_sess.run(fetches=[])
                    bar.update()
            except StopIteration:
                if self._size > 0:
                    raise RuntimeError("[InferenceRunner] the input ended before reaching its size() "
                                       f"({self._size}); check the DataFlow's __len__") from None
            except tf.errors.OutOfRangeError:
                pass
        for inf in self.infs:
            inf.trigger_epoch()

"""Checkpoints: ``ModelSaver`` writes ``model-<global_step>`` TF checkpoints (and the ``checkpoint``
state file) to the logger directory; ``MinSaver``/``MaxSaver`` copy the checkpoint with the best
value of a statistic to ``min-<stat>``/``max-<stat>``. Both load with ``SmartInit``."""
from __future__ import annotations

import glob
import os
import shutil
from datetime import datetime

from .._compat import tfv1
from ..utils import logger
from .base import Callback

__all__ = ["ModelSaver", "MinSaver", "MaxSaver"]


class ModelSaver(Callback):
    """Save the model on every trigger (every epoch by default).

    Args:
        max_to_keep: keep this many recent checkpoints (``tf.compat.v1.train.Saver``'s meaning).
        keep_checkpoint_every_n_hours: additionally never delete one checkpoint per this many hours.
        checkpoint_dir: default the logger directory.
        var_collections: collections of the variables to save (default GLOBAL_VARIABLES: weights,
            BatchNorm statistics, optimizer slots, global_step; not the per-tower copies of a
            replicated trainer, which are LOCAL_VARIABLES).

    Also writes ``graph-<MMDD-HHMMSS>.meta`` (the meta graph) before training.
    """

    def __init__(self, max_to_keep=10, keep_checkpoint_every_n_hours=0.5, checkpoint_dir=None,
                 var_collections=None):
        if var_collections is None:
            var_collections = [tfv1.GraphKeys.GLOBAL_VARIABLES]
        self.var_collections = var_collections if isinstance(var_collections, list) else [var_collections]
        self._max_to_keep = max_to_keep
        self._keep_every_n_hours = keep_checkpoint_every_n_hours
        if checkpoint_dir is None:
            checkpoint_dir = logger.get_logger_dir()
        if checkpoint_dir is not None:
            os.makedirs(checkpoint_dir, exist_ok=True)
            checkpoint_dir = os.path.normpath(checkpoint_dir)
        self.checkpoint_dir = checkpoint_dir

    def _setup_graph(self):
        if self.checkpoint_dir is None:
            raise ValueError("ModelSaver: no checkpoint_dir; pass one or call logger.set_logger_dir() first")
        seen, variables = set(), []
        for key in self.var_collections:
            for v in tfv1.get_collection(key):
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
        self.path = os.path.join(self.checkpoint_dir, "model")
        self.saver = tfv1.train.Saver(var_list=variables, max_to_keep=self._max_to_keep,
                                      keep_checkpoint_every_n_hours=self._keep_every_n_hours,
                                      write_version=tfv1.train.SaverDef.V2, save_relative_paths=True)

    def _before_train(self):
        stamp = datetime.now().strftime("%m%d-%H%M%S")
        self.saver.export_meta_graph(os.path.join(self.checkpoint_dir, f"graph-{stamp}.meta"),
                                     collection_list=self.graph.get_all_collection_keys())

    def _trigger(self):
        try:
            saved = self.saver.save(tfv1.get_default_session(), self.path, global_step=self.global_step,
                                    write_meta_graph=False)
            logger.info("Model saved to %s.", saved)
        except OSError:       # a full or flaky disk must not kill a long training run
            logger.exception("Exception in ModelSaver!")


class MinSaver(Callback):
    """Copy the newest checkpoint to ``min-<stat>`` (``max-<stat>`` with ``reverse=True``) whenever
    ``monitor_stat`` reaches a new minimum (maximum).

    Put it after ``ModelSaver`` (same ``checkpoint_dir``) and after the callback producing the stat
    (e.g. ``InferenceRunner``): callbacks run in list order.

    Args:
        monitor_stat: the statistic's name, e.g. ``'validation_error'``.
        reverse: track the maximum instead.
        filename: the copy's name (default ``min-<stat>`` / ``max-<stat>``).
        checkpoint_dir: default the logger directory.
    """

    def __init__(self, monitor_stat, reverse=False, filename=None, checkpoint_dir=None):
        self.monitor_stat = monitor_stat
        self.reverse = reverse
        self.filename = filename
        self.best = None
        checkpoint_dir = checkpoint_dir or logger.get_logger_dir()
        self.checkpoint_dir = os.path.normpath(checkpoint_dir) if checkpoint_dir else None

    def _get_stat(self):
        hist = self.trainer.monitors.get_history(self.monitor_stat)
        return hist[-1] if hist else (None, None)

    def _trigger(self):
        step, val = self._get_stat()
        if step is None:
            return
        if self.best is None or (val > self.best[1] if self.reverse else val < self.best[1]):
            self.best = (step, val)
            self._save()

    def _save(self):
        ckpt = tfv1.train.get_checkpoint_state(self.checkpoint_dir)
        if ckpt is None:
            raise RuntimeError(f"[{type(self).__name__}] no checkpoint state in {self.checkpoint_dir}: "
                               "is ModelSaver used (before this callback)?")
        path = ckpt.model_checkpoint_path        # already joined with checkpoint_dir when stored relative
        extreme = "maximum" if self.reverse else "minimum"
        if not path.endswith("-" + str(self.best[0])):
            logger.warning("[MinSaver] New %s '%s' found at global_step=%d, but the latest checkpoint is %s; "
                           "doing nothing this time (callbacks in the wrong order or at different frequencies?)",
                           extreme, self.monitor_stat, self.best[0], path)
            return
        newname = os.path.join(self.checkpoint_dir, self.filename or
                               (("max-" if self.reverse else "min-") + self.monitor_stat))
        files = glob.glob(glob.escape(path) + ".*")     # model-10.* must not match model-100.*
        if not files:
            raise RuntimeError(f"[{type(self).__name__}] the checkpoint {path} named in {self.checkpoint_dir}/checkpoint "
                               "has no files")
        for src in files:
            shutil.copyfile(src, newname + src[len(path):])
        logger.info("Model at global_step=%d with %s %s=%.5g saved.", self.best[0], extreme, self.monitor_stat,
                    self.best[1])


class MaxSaver(MinSaver):
    """:class:`MinSaver` for the maximum: copies the best checkpoint to ``max-<stat>``."""

    def __init__(self, monitor_stat, filename=None, checkpoint_dir=None):
        super().__init__(monitor_stat, True, filename=filename, checkpoint_dir=checkpoint_dir)

"""``StartProcOrThread``: start threads/processes before training and stop them after it."""
from __future__ import annotations

import multiprocessing as mp

from ..utils import logger
from .base import Callback

__all__ = ["StartProcOrThread"]


class StartProcOrThread(Callback):
    """Start ``startable`` (a thread/process or a list) in ``before_train``; with ``stop_at_last``
    (default) stop them in ``after_train``: processes are terminated, objects with a ``stop()``
    method are stopped, and all are joined (5 s each, then an error is logged)."""

    _chief_only = False

    def __init__(self, startable, stop_at_last=True):
        self._procs_threads = startable if isinstance(startable, list) else [startable]
        self._stop_at_last = stop_at_last

    def _before_train(self):
        logger.info("Starting %s ...", ", ".join(k.name for k in self._procs_threads))
        for k in self._procs_threads:
            k.start()

    def _after_train(self):
        if not self._stop_at_last:
            return
        for k in self._procs_threads:
            if not k.is_alive():
                continue
            if isinstance(k, mp.Process):
                k.terminate()
            elif hasattr(k, "stop"):
                k.stop()
            else:
                continue
            k.join(5.0)
            if k.is_alive():
                logger.error("Cannot join %s.", k.name)

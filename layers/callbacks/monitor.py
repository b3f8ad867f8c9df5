"""Monitors: where scalars and summaries go. The defaults are ``TFEventWriter`` (TensorBoard event
files), ``JSONWriter`` (``stats.json``) and ``ScalarPrinter`` (the epoch summary in the log).

``trainer.monitors`` (a :class:`Monitors`) takes ``put_scalar(name, value)`` and
``put_summary(summary)`` from callbacks and dispatches them. Summary tags lose ``tower<k>/``
prefixes and a ``-summary`` suffix, so ``add_moving_summary(cost)`` is the stat ``cost``.

``stats.json`` is tensorpack's format: a JSON list with one dict per epoch (or step when stats are
written between epochs), each holding the stats plus ``epoch_num`` and ``global_step``.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shutil
import threading
import time
from datetime import datetime

import numpy as np

from .._compat import tfv1
from ..tfutils.summary import create_image_summary, create_scalar_summary
from ..utils import logger
from .base import Callback

__all__ = ["MonitorBase", "NoOpMonitor", "Monitors", "TFEventWriter", "JSONWriter", "ScalarPrinter",
           "ScalarHistory"]

_TOWER_PREFIX = re.compile(r"tower[0-9]+/")


class MonitorBase(Callback):
    """Base class: override ``process_scalar``, ``process_summary``, ``process_image``, ``process_event``."""

    _chief_only = False

    def setup_graph(self, trainer):
        self.trainer = trainer
        self.graph = tfv1.get_default_graph()
        self._setup_graph()

    def process_summary(self, summary):
        pass

    def process(self, name, val):
        pass

    def process_scalar(self, name, val):
        pass

    def process_image(self, name, val):
        pass

    def process_event(self, evt):
        pass


class NoOpMonitor(MonitorBase):
    """Stands in for a monitor that cannot work (e.g. no logger directory)."""

    def __init__(self, name=None):
        self._name = name

    def __str__(self):
        return f"NoOpMonitor({self._name})" if self._name else "NoOpMonitor"


def _image_to_nhwc(arr):
    if arr.ndim == 4:
        return arr
    if arr.ndim == 3:
        return arr[np.newaxis] if arr.shape[-1] in (1, 3, 4) else arr[..., np.newaxis]
    if arr.ndim == 2:
        return arr[np.newaxis, :, :, np.newaxis]
    raise ValueError(f"Array of shape {arr.shape} is not an image")


class Monitors(Callback):
    """All monitors of a trainer, plus a :class:`ScalarHistory` (``get_latest``, ``get_history``)."""

    _chief_only = False

    def __init__(self, monitors):
        self._scalar_history = ScalarHistory()
        self._monitors = list(monitors) + [self._scalar_history]
        for m in self._monitors:
            if not isinstance(m, MonitorBase):
                raise TypeError(f"Monitors: {m!r} is not a MonitorBase")

    def _setup_graph(self):
        self._scalar_history.setup_graph(self.trainer)

    def _dispatch(self, func):
        for m in self._monitors:
            func(m)

    def put_summary(self, summary):
        """Dispatch a ``tf.compat.v1.Summary`` (or its serialized bytes)."""
        if isinstance(summary, bytes):
            summary = tfv1.Summary.FromString(summary)
        if not isinstance(summary, tfv1.Summary):
            raise TypeError(f"put_summary: expected a Summary, got {type(summary).__name__}")
        for val in summary.value:
            if val.WhichOneof("value") == "simple_value":
                val.tag = _TOWER_PREFIX.sub("", val.tag)
                if val.tag.endswith("-summary"):
                    val.tag = val.tag[:-len("-summary")]
                self._dispatch(lambda m, v=val: m.process_scalar(v.tag, v.simple_value))
        self._dispatch(lambda m: m.process_summary(summary))

    def put_scalar(self, name, val):
        """Dispatch one scalar statistic."""
        if isinstance(val, np.floating):
            val = float(val)
        if isinstance(val, np.integer):
            val = int(val)
        self._dispatch(lambda m: m.process_scalar(name, val))
        s = create_scalar_summary(name, val)
        self._dispatch(lambda m: m.process_summary(s))

    def put_image(self, name, val):
        """Dispatch an image (2D, HWC or NHWC array in [0, 255])."""
        arr = _image_to_nhwc(np.asarray(val))
        self._dispatch(lambda m: m.process_image(name, arr))
        s = create_image_summary(name, arr)
        self._dispatch(lambda m: m.process_summary(s))

    def put_event(self, evt):
        """Dispatch a ``tf.compat.v1.Event`` (step and wall time filled in)."""
        evt.step = self.global_step
        evt.wall_time = time.time()
        self._dispatch(lambda m: m.process_event(evt))

    def get_latest(self, name):
        """The latest value of scalar ``name`` (KeyError if none)."""
        return self._scalar_history.get_latest(name)[1]

    def get_history(self, name):
        """``[(global_step, value), ...]`` of scalar ``name``."""
        return self._scalar_history.get_history(name)


class TFEventWriter(MonitorBase):
    """Write summaries (and the graph) to TensorBoard event files in ``logdir`` (default: the
    logger directory; without one this monitor is a NoOpMonitor). Flushed every epoch."""

    def __new__(cls, logdir=None, max_queue=10, flush_secs=120, split_files=False):
        if logdir is None and logger.get_logger_dir() is None:
            logger.warning("logger directory was not set. Ignore TFEventWriter.")
            return NoOpMonitor("TFEventWriter")
        return super().__new__(cls)

    def __init__(self, logdir=None, max_queue=10, flush_secs=120, split_files=False):
        logdir = logdir if logdir is not None else logger.get_logger_dir()
        if not os.path.isdir(logdir):
            raise ValueError(f"TFEventWriter: logdir {logdir!r} is not a directory")
        self._logdir = os.path.normpath(logdir)
        self._max_queue = max_queue
        self._flush_secs = flush_secs
        self._split_files = split_files
        self._graph_thread = None

    def _setup_graph(self):
        self._writer = tfv1.summary.FileWriter(self._logdir, max_queue=self._max_queue, flush_secs=self._flush_secs)

    def _before_train(self):
        # Serialising a big graph takes a while: do it beside the first training steps.
        self._graph_thread = threading.Thread(target=self._writer.add_graph, args=(self.graph,),
                                              name="TFEventWriter-graph", daemon=True)
        self._graph_thread.start()

    def process_summary(self, summary):
        self._writer.add_summary(summary, self.global_step)

    def process_event(self, evt):
        self._writer.add_event(evt)

    def _trigger(self):
        self._writer.flush()
        if self._split_files:
            self._writer.close()
            self._writer.reopen()

    def _after_train(self):
        if self._graph_thread is not None:
            self._graph_thread.join()
        self._writer.close()


class JSONWriter(MonitorBase):
    """Write all scalars to ``<logger dir>/stats.json`` (a NoOpMonitor without a logger directory).

    An existing ``stats.json`` is appended to when its last epoch is the one before
    ``starting_epoch`` (a resumed run); otherwise it is moved to ``stats.json.<time>``.
    """

    FILENAME = "stats.json"

    def __new__(cls):
        if logger.get_logger_dir():
            return super().__new__(cls)
        logger.warning("logger directory was not set. Ignore JSONWriter.")
        return NoOpMonitor("JSONWriter")

    @staticmethod
    def load_existing_json(dir=None):
        """The list stored in ``dir/stats.json`` (dir defaults to the logger directory), or None."""
        dir = dir or logger.get_logger_dir()
        if not dir:
            return None
        fname = os.path.join(dir, JSONWriter.FILENAME)
        if not os.path.isfile(fname):
            return None
        with open(fname) as f:
            stats = json.load(f)
        if not isinstance(stats, list):
            raise ValueError(f"{fname}: expected a JSON list of stats, got {type(stats).__name__}")
        return stats

    @staticmethod
    def load_existing_epoch_number(dir=None):
        """The ``epoch_num`` of the last entry of an existing stats.json, or None."""
        stats = JSONWriter.load_existing_json(dir)
        try:
            return int(stats[-1]["epoch_num"])
        except (TypeError, IndexError, KeyError, ValueError):
            return None

    def _setup_graph(self):
        self._stats = []
        self._stat_now = {}

    def _before_train(self):
        stats = JSONWriter.load_existing_json()
        self._fname = os.path.join(logger.get_logger_dir(), JSONWriter.FILENAME)
        if stats is not None:
            try:
                epoch = stats[-1]["epoch_num"] + 1
            except (IndexError, KeyError, TypeError):
                epoch = None
            start = self.trainer.loop.starting_epoch
            if epoch is None or epoch == start:
                logger.info("Found existing JSON inside %s, will append to it.", logger.get_logger_dir())
                self._stats = stats
            else:
                backup = os.path.join(logger.get_logger_dir(),
                                      JSONWriter.FILENAME + "." + datetime.now().strftime("%m%d-%H%M%S"))
                logger.warning("History epoch=%s from JSON is not the predecessor of the current starting_epoch=%d; "
                               "use AutoResumeTrainConfig or set starting_epoch to resume. Old stats moved to %s",
                               epoch - 1 if epoch is not None else None, start, backup)
                shutil.move(self._fname, backup)
        self._trigger()

    def _trigger_step(self):
        if self.local_step != self.trainer.steps_per_epoch - 1:   # the last step is written by trigger_epoch
            self._trigger()

    def _trigger_epoch(self):
        self._trigger()

    def process_scalar(self, name, val):
        self._stat_now[name] = val

    def _trigger(self):
        if self._stat_now:
            self._stat_now["epoch_num"] = self.epoch_num
            self._stat_now["global_step"] = self.global_step
            self._stats.append(self._stat_now)
            self._stat_now = {}
            tmp = self._fname + ".tmp"
            try:
                with open(tmp, "w") as f:
                    json.dump(self._stats, f)
                os.replace(tmp, self._fname)      # atomic: a crash never leaves half a file
            except OSError:
                logger.exception("Exception in JSONWriter._write_stat()!")


class ScalarPrinter(MonitorBase):
    """Log scalars (``name: value`` with 5 significant digits, sorted by name) after every epoch
    and/or step; ``whitelist``/``blacklist`` are lists of regexes (``re.search``)."""

    def __init__(self, enable_step=False, enable_epoch=True, whitelist=None, blacklist=None):
        self._whitelist = None if whitelist is None else {re.compile(r) for r in whitelist}
        self._blacklist = {re.compile(r) for r in (blacklist or [])}
        self._enable_step = enable_step
        self._enable_epoch = enable_epoch
        self._dic = {}

    def _before_train(self):
        self._trigger()

    def _trigger_step(self):
        if self._enable_step:
            if self.local_step != self.trainer.steps_per_epoch - 1 or not self._enable_epoch:
                self._trigger()

    def _trigger_epoch(self):
        if self._enable_epoch:
            self._trigger()

    def process_scalar(self, name, val):
        self._dic[name] = float(val)

    def _trigger(self):
        for k, v in sorted(self._dic.items()):
            if self._whitelist is not None and not any(r.search(k) for r in self._whitelist):
                continue
            if any(r.search(k) for r in self._blacklist):
                continue
            logger.info("%s: %.5g", k, v)
        self._dic = {}


class ScalarHistory(MonitorBase):
    """Keeps every scalar as ``(global_step, value)`` (used by ``trainer.monitors.get_history``)."""

    def __init__(self):
        self._dic = collections.defaultdict(list)

    def process_scalar(self, name, val):
        self._dic[name].append((self.global_step, float(val)))

    def get_latest(self, name):
        hist = self._dic.get(name)
        if not hist:
            raise KeyError(f"No available data for the key: {name}")
        return hist[-1]

    def get_history(self, name):
        return self._dic.get(name, [])

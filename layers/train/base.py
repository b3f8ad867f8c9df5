"""The trainer's main loop (tensorpack's ``Trainer``): callbacks, session, epochs and steps.

``train()`` = ``setup_callbacks`` (monitors + callbacks build their ops) -> ``initialize``
(create the session, run initializers, restore ``session_init``, finalize the graph) ->
``main_loop`` (epochs ``starting_epoch..max_epoch``, ``steps_per_epoch`` steps each). Training ends
early on :class:`StopTraining` raised by a callback, on :meth:`Trainer.stop_training`, or when the
input ends (``OutOfRangeError``); if it ended because the input pipeline failed, that error is raised.
Callbacks' ``after_train`` always runs and the session is closed afterwards.
"""
from __future__ import annotations

import copy
import time

from .._compat import tf, tfv1
from ..callbacks import Callback, Callbacks, HookedSession, MonitorBase, Monitors
from ..callbacks.steps import MaintainStepCounter
from ..sessinit import JustCurrentSession, SessionInit
from ..tfutils.common import get_global_step_value
from ..tfutils.sesscreate import NewSessionCreator
from ..utils import logger
from ..utils.utils import humanize_time_delta

__all__ = ["StopTraining", "Trainer", "TrainLoop"]


class StopTraining(Exception):
    """Raise from a callback to end training cleanly (``after_train`` still runs)."""


class TrainLoop:
    """Epoch/step counters of a trainer."""

    def __init__(self):
        self._epoch_num = 0
        self._global_step = 0
        self._local_step = -1

    def config(self, steps_per_epoch, starting_epoch, max_epoch):
        self.starting_epoch = int(starting_epoch)
        self.max_epoch = int(max_epoch)
        self.steps_per_epoch = int(steps_per_epoch)
        if self.steps_per_epoch < 0 or self.max_epoch < 0:
            raise ValueError(f"steps_per_epoch ({steps_per_epoch}) and max_epoch ({max_epoch}) must be >= 0")
        self._epoch_num = self.starting_epoch - 1

    def update_global_step(self):
        self._global_step = get_global_step_value()

    @property
    def epoch_num(self):
        """The current epoch (from ``before_epoch`` to ``trigger_epoch`` of epoch k, it is k)."""
        return self._epoch_num

    @property
    def global_step(self):
        """Training steps done so far (the graph's ``global_step``), incremented after each step."""
        return self._global_step

    @property
    def local_step(self):
        """Steps finished in the current epoch."""
        return self._local_step


class Trainer:
    """Base trainer. Subclasses build ``train_op`` (or override :meth:`run_step`)."""

    is_chief = True
    sess = None
    hooked_sess = None

    def __init__(self):
        self._callbacks = []
        self.loop = TrainLoop()
        self._stop_requested = False

    def _register_callback(self, cb):
        if isinstance(cb, (list, tuple)):
            for x in cb:
                self._register_callback(x)
            return True
        if not isinstance(cb, Callback):
            raise TypeError(f"register_callback: {cb!r} is not a Callback")
        if isinstance(self._callbacks, Callbacks):
            raise RuntimeError("Cannot register more callbacks after the trainer was set up")
        if not self.is_chief and cb.chief_only:
            logger.warning("Callback %s is chief-only, skipped.", cb)
            return False
        self._callbacks.append(cb)
        return True

    register_callback = _register_callback

    def run_step(self):
        """One training step: ``hooked_sess.run(train_op)``."""
        if not hasattr(self, "train_op"):
            raise NotImplementedError("Set Trainer.train_op or override Trainer.run_step()")
        self.hooked_sess.run(self.train_op)

    def stop_training(self):
        """Ask the main loop to end after the current step (or epoch, when called from trigger_epoch)."""
        self._stop_requested = True

    def setup_callbacks(self, callbacks, monitors):
        """Register the step counter, ``callbacks`` and ``monitors`` and let them build their ops."""
        if tf.executing_eagerly():
            raise RuntimeError("The trainer builds a graph: run it inside `with tf.Graph().as_default():` "
                               "or use launch_train_with_config(), which creates one")
        self.register_callback(MaintainStepCounter())
        for cb in callbacks:
            if isinstance(cb, MonitorBase):
                raise TypeError(f"{cb} is a monitor: pass it in monitors=, not callbacks=")
            self.register_callback(cb)
        registered = [m for m in monitors if self.register_callback(m)]
        self.monitors = Monitors(registered)
        self.register_callback(self.monitors)
        logger.info("Setup callbacks graph ...")
        self._callbacks = Callbacks(self._callbacks)
        self._callbacks.setup_graph(self)

    def initialize(self, session_creator, session_init):
        """Create and initialise the session, restore ``session_init``, finalize the graph."""
        if not isinstance(session_creator, tfv1.train.SessionCreator):
            raise TypeError(f"session_creator must be a tf.compat.v1.train.SessionCreator, got {session_creator!r}")
        if not isinstance(session_init, SessionInit):
            raise TypeError(f"session_init must be a SessionInit (e.g. SmartInit(path)), got {session_init!r}")
        session_init._setup_graph()
        logger.info("Creating the session ...")
        self.sess = session_creator.create_session()
        self.hooked_sess = HookedSession(self.sess, self._callbacks.get_hooks())
        logger.info("Initializing the session ...")
        session_init._run_init(self.sess)
        self.sess.graph.finalize()
        logger.info("Graph Finalized.")

    def _input_error(self):
        src = getattr(self, "_input_source", None)
        return getattr(src, "error", None)

    def main_loop(self, steps_per_epoch, starting_epoch, max_epoch):
        """Run epochs ``starting_epoch..max_epoch`` of ``steps_per_epoch`` steps."""
        with self.sess.as_default():
            self.loop.config(steps_per_epoch, starting_epoch, max_epoch)
            self.loop.update_global_step()
            try:
                self._callbacks.before_train()
                self.loop.update_global_step()     # a callback (e.g. a restore) may have changed it
                for epoch in range(self.loop.starting_epoch, self.loop.max_epoch + 1):
                    self.loop._epoch_num = epoch
                    logger.info("Start Epoch %d ...", self.loop.epoch_num)
                    self._callbacks.before_epoch()
                    start = time.monotonic()
                    for step in range(self.loop.steps_per_epoch):
                        self.loop._local_step = step
                        if self.hooked_sess.should_stop() or self._stop_requested:
                            logger.info("Training was stopped at global_step=%d.", self.loop.global_step)
                            return
                        self.run_step()
                        self._callbacks.trigger_step()
                    self._callbacks.after_epoch()
                    logger.info("Epoch %d (global_step %d) finished, time:%s.", self.loop.epoch_num,
                                self.loop.global_step, humanize_time_delta(time.monotonic() - start))
                    self._callbacks.trigger_epoch()
                    if self._stop_requested:
                        logger.info("Training was stopped after epoch %d.", self.loop.epoch_num)
                        return
                logger.info("Training has finished!")
            except StopTraining as e:
                logger.info("Training was stopped by exception %s%s.", type(e).__name__, f": {e}" if str(e) else "")
            except tf.errors.OutOfRangeError as e:
                err = self._input_error()
                if err is not None:
                    raise RuntimeError(f"The input pipeline failed: {type(err).__name__}: {err}") from err
                logger.info("Training was stopped by exception %s.", e.message)
            except KeyboardInterrupt:
                logger.info("Detected Ctrl-C and exiting main loop.")
                raise
            except Exception:
                logger.error("Training failed at global_step=%d", self.loop.global_step)
                raise
            finally:
                self._callbacks.after_train()
                self.sess.close()

    def train(self, callbacks, monitors, session_creator, session_init, steps_per_epoch, starting_epoch=1,
              max_epoch=9999999):
        """``setup_callbacks`` + ``initialize`` + ``main_loop``."""
        self.setup_callbacks(callbacks, monitors)
        self.initialize(session_creator, session_init)
        self.main_loop(steps_per_epoch, starting_epoch, max_epoch)

    def train_with_defaults(self, *, callbacks=None, monitors=None, session_creator=None, session_init=None,
                            steps_per_epoch=None, starting_epoch=1, max_epoch=9999999, extra_callbacks=None):
        """:meth:`train` with tensorpack's defaults: ``extra_callbacks`` = DEFAULT_CALLBACKS(),
        ``monitors`` = DEFAULT_MONITORS(), a new session, no restore."""
        from .config import DEFAULT_CALLBACKS, DEFAULT_MONITORS

        callbacks = copy.copy(callbacks or [])
        monitors = DEFAULT_MONITORS() if monitors is None else monitors
        callbacks.extend(DEFAULT_CALLBACKS() if extra_callbacks is None else extra_callbacks)
        if steps_per_epoch is None:
            raise ValueError("train_with_defaults: steps_per_epoch is required")
        self.train(callbacks, monitors, session_creator or NewSessionCreator(), session_init or JustCurrentSession(),
                   steps_per_epoch, starting_epoch, max_epoch)


def _loop_property(name):
    return property(lambda self: getattr(self.loop, name), doc=f"The training loop's ``{name}``.")


for _name in ("global_step", "local_step", "steps_per_epoch", "epoch_num", "starting_epoch", "max_epoch"):
    setattr(Trainer, _name, _loop_property(_name))

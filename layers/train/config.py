"""``TrainConfig`` / ``AutoResumeTrainConfig`` and the default callbacks and monitors."""
from __future__ import annotations

import os

from ..callbacks import (
    JSONWriter,
    MergeAllSummaries,
    MovingAverageSummary,
    ProgressBar,
    RunUpdateOps,
    ScalarPrinter,
    TFEventWriter,
)
from ..input_source import InputSource, is_dataflow
from ..model_desc import ModelDescBase
from ..sessinit import SaverRestore, SessionInit
from ..tfutils.sesscreate import NewSessionCreator
from ..utils import logger

__all__ = ["TrainConfig", "AutoResumeTrainConfig", "DEFAULT_CALLBACKS", "DEFAULT_MONITORS"]


def DEFAULT_CALLBACKS():
    """``[MovingAverageSummary(), ProgressBar(), MergeAllSummaries(), RunUpdateOps()]``: moving
    summaries and BatchNorm updates every step, a progress bar, summaries once per epoch."""
    return [MovingAverageSummary(), ProgressBar(), MergeAllSummaries(), RunUpdateOps()]


def DEFAULT_MONITORS():
    """``[TFEventWriter(), JSONWriter(), ScalarPrinter()]`` (the first two need a logger directory)."""
    return [TFEventWriter(), JSONWriter(), ScalarPrinter()]


def _check_type(value, types, name):
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(f"TrainConfig: {name} has to be {names}, got {type(value).__name__}")


class TrainConfig:
    """Everything ``launch_train_with_config`` needs.

    Args:
        dataflow: the training DataFlow, or ``data``: an InputSource (not both).
        model: a ModelDesc.
        callbacks: list of callbacks; ``extra_callbacks`` (default :func:`DEFAULT_CALLBACKS`) are
            appended; ``monitors`` default :func:`DEFAULT_MONITORS`.
        session_creator / session_config: how to make the session (default: a new session with
            soft placement and GPU memory growth).
        session_init: restore values (``SmartInit(path)``); default nothing.
        starting_epoch: number of the first epoch (default 1).
        steps_per_epoch: default ``len(dataflow)`` / ``data.size()``.
        max_epoch: last epoch (default 99999).
    """

    def __init__(self, dataflow=None, data=None, model=None, callbacks=None, extra_callbacks=None, monitors=None,
                 session_creator=None, session_config=None, session_init=None, starting_epoch=1,
                 steps_per_epoch=None, max_epoch=99999):
        if data is not None and dataflow is not None:
            raise ValueError("TrainConfig: dataflow and data cannot be both given")
        if dataflow is not None and not is_dataflow(dataflow):
            raise TypeError(f"TrainConfig: dataflow has to be a DataFlow (reset_state() and __iter__), got "
                            f"{type(dataflow).__name__}")
        if data is not None:
            _check_type(data, InputSource, "data")
        self.dataflow = dataflow
        self.data = data
        if model is not None:
            _check_type(model, ModelDescBase, "model")
        self.model = model
        for name, val in (("callbacks", callbacks), ("extra_callbacks", extra_callbacks), ("monitors", monitors)):
            if val is not None:
                _check_type(val, list, name)
        self.callbacks = callbacks
        self.extra_callbacks = extra_callbacks
        self.monitors = monitors
        if session_init is not None:
            _check_type(session_init, SessionInit, "session_init")
        self.session_init = session_init
        if session_creator is None:
            self.session_creator = NewSessionCreator(config=session_config)
        else:
            if session_config is not None:
                raise ValueError("TrainConfig: cannot set both session_creator and session_config")
            self.session_creator = session_creator
        if steps_per_epoch is None:
            try:
                if dataflow is not None:
                    steps_per_epoch = len(dataflow)
                elif data is not None:
                    steps_per_epoch = data.size()
                else:
                    raise NotImplementedError
            except (NotImplementedError, TypeError):
                raise ValueError("TrainConfig: set steps_per_epoch; the size of the input is not available") from None
        self.steps_per_epoch = int(steps_per_epoch)
        self.starting_epoch = int(starting_epoch)
        self.max_epoch = int(max_epoch)


class AutoResumeTrainConfig(TrainConfig):
    """A :class:`TrainConfig` that resumes from the logger directory: if it holds a ``checkpoint``
    state file, ``session_init`` restores the newest checkpoint; if it holds ``stats.json``,
    ``starting_epoch`` is its last ``epoch_num`` + 1.

    Args:
        always_resume: True (default): what is found overrides the given ``session_init`` /
            ``starting_epoch``; False: given arguments win.
        kwargs: as for :class:`TrainConfig`.
    """

    def __init__(self, always_resume=True, **kwargs):
        found_sessinit = found_epoch = False
        look_ckpt = always_resume or "session_init" not in kwargs
        look_epoch = always_resume or "starting_epoch" not in kwargs
        if look_ckpt:
            sessinit = self.get_sessinit_resume()
            if sessinit is not None:
                found_sessinit = True
                logger.info("Found checkpoint at %s. Will load it%s.", sessinit.path,
                            " (overriding session_init)" if "session_init" in kwargs else "")
                kwargs["session_init"] = sessinit
        if look_epoch:
            last = JSONWriter.load_existing_epoch_number()
            if last is not None:
                found_epoch = True
                logger.info("Found history statistics from JSON. Setting starting_epoch to %d.", last + 1)
                kwargs["starting_epoch"] = last + 1
        # Only when both were looked up (tensorpack also refuses a given starting_epoch here).
        if look_ckpt and look_epoch and found_sessinit != found_epoch:
            raise ValueError(f"AutoResumeTrainConfig: the logger directory {logger.get_logger_dir()} has "
                             f"{'a checkpoint but no stats.json' if found_sessinit else 'stats.json but no checkpoint'}"
                             "; cannot tell where to resume")
        super().__init__(**kwargs)

    @staticmethod
    def get_sessinit_resume(dir=None):
        """A ``SaverRestore`` of ``dir/checkpoint`` (dir defaults to the logger directory), or None."""
        dir = dir or logger.get_logger_dir()
        if not dir:
            return None
        path = os.path.join(dir, "checkpoint")
        if not os.path.isfile(path):
            return None
        sessinit = SaverRestore(path)
        sessinit.path = path
        return sessinit

"""The training logger, as ``tensorpack.utils.logger``.

``logger.info/warn/warning/error/exception/debug`` print ``[MMDD HH:MM:SS @file.py:line] message`` to
stdout (warnings tagged ``WRN``, errors ``ERR``; no terminal colours). :func:`set_logger_dir` also
writes everything to ``<dir>/log.log`` and makes ``<dir>`` the directory where checkpoints,
``stats.json`` and TensorBoard event files go (:func:`get_logger_dir`).

Difference from tensorpack: when the directory exists and is not empty and no ``action`` is
given, tensorpack always asks on stdin. Here that prompt only appears when stdin is a terminal;
without one (CI, a batch job, ``stdin=DEVNULL``) the directory is **kept** (action ``'k'``, what a
resumed run needs) and a warning says so. Pass ``action`` to choose explicitly.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from datetime import datetime

__all__ = ["set_logger_dir", "auto_set_dir", "get_logger_dir", "info", "warn", "warning", "error",
           "exception", "debug", "critical", "setLevel", "addFilter", "ACTIONS"]

#: What :func:`set_logger_dir` can do with an existing non-empty directory.
ACTIONS = {"k": "keep it", "d": "delete it", "b": "move it to <dir><time> (backup)",
           "n": "use a new directory <dir><time>", "q": "quit (raise OSError)"}
#: The action taken without a terminal when none is given.
NON_INTERACTIVE_ACTION = "k"

_FMT = "[%(asctime)s @%(filename)s:%(lineno)d] "
_TAGS = {logging.WARNING: "WRN ", logging.ERROR: "ERR ", logging.CRITICAL: "ERR ", logging.DEBUG: "DBG "}


class _Formatter(logging.Formatter):
    def __init__(self):
        super().__init__(datefmt="%m%d %H:%M:%S")
        self._by_level = {lvl: logging.Formatter(_FMT + tag + "%(message)s", datefmt="%m%d %H:%M:%S")
                          for lvl, tag in _TAGS.items()}
        self._plain = logging.Formatter(_FMT + "%(message)s", datefmt="%m%d %H:%M:%S")

    def format(self, record):
        return self._by_level.get(record.levelno, self._plain).format(record)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at emit time (pytest and notebooks replace it)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def _make_logger():
    lg = logging.getLogger("tensorpack")       # the name tensorpack users' logging configs refer to
    lg.propagate = False
    lg.setLevel(logging.INFO)
    if not any(isinstance(h, _StdoutHandler) for h in lg.handlers):
        h = _StdoutHandler()
        h.setFormatter(_Formatter())
        lg.addHandler(h)
    return lg


_logger = _make_logger()
info = _logger.info
warning = _logger.warning
warn = _logger.warning
error = _logger.error
critical = _logger.critical
exception = _logger.exception
debug = _logger.debug
setLevel = _logger.setLevel
addFilter = _logger.addFilter

LOG_DIR = None
_FILE_HANDLER = None


def _time_str():
    return datetime.now().strftime("%m%d-%H%M%S")


def _set_file(path):
    global _FILE_HANDLER
    if os.path.isfile(path):
        backup = path + "." + _time_str()
        shutil.move(path, backup)
        info("Existing log file '%s' backed up to '%s'", path, backup)
    hdl = logging.FileHandler(path, encoding="utf-8", mode="w")
    hdl.setFormatter(_Formatter())
    _FILE_HANDLER = hdl
    _logger.addHandler(hdl)
    info("Argv: %s", " ".join(sys.argv))


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):    # closed or replaced stdin
        return False


def _dir_nonempty(dirname) -> bool:
    return os.path.isdir(dirname) and any(not x.startswith(".") for x in os.listdir(dirname))


def set_logger_dir(dirname, action=None):
    """Log to ``dirname/log.log`` and use ``dirname`` for checkpoints, stats and events.

    Args:
        dirname: the directory (created if missing).
        action: what to do if it exists and is not empty: ``'k'`` keep, ``'d'`` delete, ``'b'``
            back it up to ``<dirname><time>``, ``'n'`` use ``<dirname><time>`` instead, ``'q'``
            raise OSError. None (default): ask on stdin if it is a terminal, otherwise keep (``'k'``)
            with a warning; never blocks on a prompt without a terminal.
    """
    global LOG_DIR, _FILE_HANDLER
    if action is not None and (not isinstance(action, str) or action.lower().strip() not in ACTIONS):
        raise ValueError(f"set_logger_dir: action must be None or one of {sorted(ACTIONS)} "
                         f"({', '.join(f'{k}: {v}' for k, v in ACTIONS.items())}), got {action!r}")
    dirname = os.path.normpath(os.fspath(dirname))
    if _FILE_HANDLER is not None:
        _logger.removeHandler(_FILE_HANDLER)
        _FILE_HANDLER.close()      # release the file so the directory can be deleted
        _FILE_HANDLER = None
    if _dir_nonempty(dirname):
        if not action:
            if _stdin_is_terminal():
                warning("Log directory %s exists! Use 'd' to delete it. If you're resuming from a previous "
                        "run, you can choose to keep it. Press any other key to exit.", dirname)
                while not action:
                    action = input("Select Action: k (keep) / d (delete) / q (quit):").lower().strip()
            else:
                action = NON_INTERACTIVE_ACTION
                warning("Log directory %s exists and stdin is not a terminal: keeping it (action='k'). "
                        "Pass action='d'/'b'/'n' to set_logger_dir()/auto_set_dir() to start afresh.", dirname)
        act = action.lower().strip()
        if act == "b":
            backup = dirname + _time_str()
            shutil.move(dirname, backup)
            info("Directory '%s' backed up to '%s'", dirname, backup)
        elif act == "d":
            shutil.rmtree(dirname)
        elif act == "n":
            dirname = dirname + _time_str()
            info("Use a new log directory %s", dirname)
        elif act != "k":
            raise OSError(f"Directory {dirname} exists!")
    LOG_DIR = dirname
    os.makedirs(dirname, exist_ok=True)
    _set_file(os.path.join(dirname, "log.log"))


def auto_set_dir(action=None, name=None):
    """:func:`set_logger_dir` on ``train_log/<script name without .py>[:name]``; the script is
    ``__main__``'s file (``train_log/interactive`` when there is none, e.g. in a notebook)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    base = os.path.splitext(os.path.basename(path))[0] if path else "interactive"
    dirname = os.path.join("train_log", base)
    if name:
        dirname += ("_%s" if os.name == "nt" else ":%s") % name
    set_logger_dir(dirname, action=action)


def get_logger_dir():
    """The directory set by :func:`set_logger_dir`, or None."""
    return LOG_DIR

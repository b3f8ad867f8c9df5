"""Small helpers from ``tensorpack.utils.utils``: time formatting, environment, RNG, tqdm settings."""
from __future__ import annotations

import contextlib
import os
import sys

from ..dataflow.rng import fix_rng_seed, get_rng  # one seed for dataflows and users

__all__ = ["humanize_time_delta", "change_env", "fix_rng_seed", "get_rng", "get_tqdm_kwargs", "get_tqdm"]


def humanize_time_delta(sec: float) -> str:
    """``61`` -> ``'1 minute 1 second'``; below a minute the seconds keep 3 significant digits."""
    if sec < 0:
        return f"{sec:.3g} seconds"
    if sec == 0:
        return "0 second"
    total = int(sec)
    vals = [total // 86400, total % 86400 // 3600, total % 3600 // 60, total % 60]
    if sec < 60:
        vals[-1] = sec
    parts = [f"{v:.3g} {u}{'s' if v > 1 else ''}" for v, u in zip(vals, ("day", "hour", "minute", "second"), strict=True)
             if v > 0]
    return " ".join(parts)


@contextlib.contextmanager
def change_env(name: str, val: str | None):
    """A context in which environment variable ``name`` is ``val`` (None: unset); restored on exit."""
    old = os.environ.get(name)
    try:
        if val is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = val
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def get_tqdm_kwargs(**kwargs) -> dict:
    """tqdm settings used by the progress bars: ASCII bar; when stdout is not a terminal (a log file,
    CI) the bar refreshes at most every 60 s instead of flooding the log."""
    out = dict(smoothing=0.5, dynamic_ncols=True, ascii=True,
               bar_format="{l_bar}{bar}|{n_fmt}/{total_fmt}[{elapsed}<{remaining},{rate_noinv_fmt}]")
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    out["mininterval"] = 0.5 if tty else 60
    out.update(kwargs)
    return out


def get_tqdm(*args, **kwargs):
    """``tqdm.tqdm`` with :func:`get_tqdm_kwargs` defaults."""
    from tqdm import tqdm
    return tqdm(*args, **get_tqdm_kwargs(**kwargs))

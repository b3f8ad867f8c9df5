"""What every child process of the multi-process server sets up first (engine and front ends)."""
from __future__ import annotations

import gc
import logging
import math
import os
import signal
from pathlib import Path

__all__ = ["configure_process", "available_cpus", "settle_heap"]


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def configure_process(role: str, log_level: str):
    """Logging tagged with the process's role; SIGINT and SIGTERM ignored.

    Only the supervisor acts on signals: a Ctrl-C reaches the whole process group and some service
    managers send SIGTERM to every process of the group, but the drain must happen in order (the
    engine finishes the accepted work, then the front ends stop, then the engine), so the supervisor
    drives it (:mod:`service.supervisor`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s [{role} {os.getpid()}]: %(message)s")


def settle_heap():
    """After start-up: move every object alive now out of the cyclic garbage collector's sight
    (``gc.freeze``: modules, the app, TensorFlow's wrappers are never garbage) and collect the
    youngest generation less often. A request allocates a few hundred short-lived objects; with the
    defaults a full collection walks the whole heap every few thousand requests, a pause of several
    milliseconds that lands in the latency tail."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)

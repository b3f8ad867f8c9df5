"""Random number generators for dataflows and augmentors, seeded the way tensorpack seeds them.

``get_rng(obj)`` returns a fresh ``np.random.RandomState`` whose seed mixes the object's id, the process
id and the current time, so two objects, or the same object in two worker processes, draw different
numbers. ``fix_rng_seed(seed)`` makes every later ``get_rng`` call return a generator seeded with exactly
``seed`` (tensorpack's ``tensorpack.utils.utils.fix_rng_seed``): runs become reproducible, and every worker
process of a ``MultiProcessRunner`` then produces the same random stream.
"""
import os
import time

import numpy as np

__all__ = ["get_rng", "fix_rng_seed"]

_FIXED_SEED = None


def fix_rng_seed(seed):
    """Make every later ``get_rng()`` return ``np.random.RandomState(seed)``.

    Call it before building dataflows/augmentors (their generators are created in ``reset_state()``).
    ``seed=None`` goes back to time/pid/id based seeds.
    """
    global _FIXED_SEED
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"fix_rng_seed: seed must be an int or None, got {type(seed).__name__}")
    _FIXED_SEED = None if seed is None else int(seed)


def get_rng(obj=None):
    """A ``np.random.RandomState`` for ``obj``.

    Without ``fix_rng_seed`` the seed is ``(id(obj) + pid + current time in microseconds) mod 2**32 - 1``,
    so each object and each process gets its own stream; with it, the fixed seed.
    """
    if _FIXED_SEED is not None:
        return np.random.RandomState(_FIXED_SEED)
    seed = (id(obj) + os.getpid() + time.time_ns() // 1000) % 4294967295
    return np.random.RandomState(seed)

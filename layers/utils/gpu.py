"""``get_num_gpu``: how many GPUs this process can train on (``tensorpack.utils.gpu``)."""
from __future__ import annotations

import os

from .utils import change_env

__all__ = ["get_num_gpu", "get_nr_gpu", "change_gpu"]


def _visible_from_env(env: str) -> int:
    # CUDA enumerates the listed devices up to the first invalid entry ('-1' hides all after it).
    n = 0
    for tok in env.split(","):
        tok = tok.strip()
        if not tok or tok.startswith("-"):
            break
        n += 1
    return n


def get_num_gpu() -> int:
    """GPUs TensorFlow can use: ``tf.config.list_physical_devices('GPU')``, limited by
    ``CUDA_VISIBLE_DEVICES`` when it is set. Lists devices only: it creates no session and
    allocates no GPU memory. 0 on a CPU-only TensorFlow."""
    import tensorflow as tf

    n = len(tf.config.list_physical_devices("GPU"))
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        n = min(n, _visible_from_env(env))
    return n


get_nr_gpu = get_num_gpu


def change_gpu(val):
    """A context with ``CUDA_VISIBLE_DEVICES=val`` (``-1``: no GPU). Only effective before TensorFlow
    first lists its devices."""
    val = str(val)
    return change_env("CUDA_VISIBLE_DEVICES", "" if val == "-1" else val)

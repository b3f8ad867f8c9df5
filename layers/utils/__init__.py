"""tensorpack's ``tensorpack.utils``: the training ``logger``, ``gpu.get_num_gpu`` and small helpers.

``from layers.utils import logger`` is ``from tensorpack.utils import logger``.
"""
from . import gpu, logger
from .utils import change_env, fix_rng_seed, get_rng, get_tqdm, get_tqdm_kwargs, humanize_time_delta

__all__ = ["logger", "gpu", "change_env", "fix_rng_seed", "get_rng", "get_tqdm", "get_tqdm_kwargs",
           "humanize_time_delta"]

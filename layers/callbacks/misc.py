"""``EstimatedTimeLeft``: log the expected remaining training time after every epoch."""
from __future__ import annotations

import collections
import time

import numpy as np

from ..utils import logger
from ..utils.utils import humanize_time_delta
from .base import Callback

__all__ = ["EstimatedTimeLeft"]


class EstimatedTimeLeft(Callback):
    """Estimate from the last ``last_k_epochs`` epoch durations (median, or mean with ``median=False``)."""

    def __init__(self, last_k_epochs=5, median=True):
        self._times = collections.deque(maxlen=last_k_epochs)
        self._median = median

    def _before_train(self):
        self._max_epoch = self.trainer.max_epoch
        self._last_time = time.monotonic()

    def _trigger_epoch(self):
        now = time.monotonic()
        self._times.append(now - self._last_time)
        self._last_time = now
        epoch_time = np.median(self._times) if self._median else np.mean(self._times)
        left = (self._max_epoch - self.epoch_num) * epoch_time
        if left > 0:
            logger.info("Estimated Time Left: %s", humanize_time_delta(left))

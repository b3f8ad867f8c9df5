"""The one path every protocol takes to run a model: pick the entry, submit, retry across a swap."""
from __future__ import annotations

import numpy as np

from .batcher import ShuttingDown
from .manager import ModelEntry, ModelManager

__all__ = ["infer"]


async def infer(manager: ModelManager, entry: ModelEntry, arrays: dict[str, np.ndarray],
                deadline: float | None) -> dict[str, np.ndarray]:
    """Run ``arrays`` through the entry's current batcher.

    If a hot reload retired the batcher between lookup and submit, the request moves to the new
    version instead of failing.
    """
    for _ in range(3):
        batcher = entry.batcher
        try:
            return await batcher.submit(arrays, deadline)
        except ShuttingDown:
            if not manager.accepting or entry.batcher is batcher:
                raise
    raise ShuttingDown("the model was swapped repeatedly while this request waited; retry")

"""The one path every protocol takes to run a model: pick the version, submit, retry across a swap."""
from __future__ import annotations

import numpy as np

from .batcher import ShuttingDown
from .manager import ModelEntry, ModelManager

__all__ = ["infer"]


async def infer(manager: ModelManager, entry: ModelEntry, arrays: dict[str, np.ndarray],
                deadline: float | None, version: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Run ``arrays`` on the entry's current version; return the outputs and the version that computed them.

    ``version`` (a request pinned to a version) runs on that version or fails with 404 naming the loaded
    version (:meth:`ModelManager.version_not_loaded`): never on another one. An unpinned request whose
    version was retired before its batch ran (a hot reload whose old queue could not drain in time)
    moves to the new version instead of failing.
    """
    for _ in range(3):
        # Read together, with no await in between: the swap replaces both in one statement, so the
        # version reported is the one whose batcher computes the answer.
        model, batcher = entry.model, entry.batcher
        if version is not None and model.version != str(version):
            raise manager.version_not_loaded(entry, version)
        try:
            return await batcher.submit(arrays, deadline), model.version
        except ShuttingDown:
            if not manager.accepting or entry.batcher is batcher:
                raise
            if version is not None:
                raise manager.version_not_loaded(entry, version) from None
    raise ShuttingDown("the model was swapped repeatedly while this request waited; retry")

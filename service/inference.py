"""The one path every protocol takes to run a model: :meth:`ModelManager.infer` (or its mirror's in a
front-end process, which forwards the request to the engine process)."""
from __future__ import annotations

import numpy as np

from .manager import ModelEntry, ModelManager

__all__ = ["infer"]


async def infer(manager: ModelManager, entry: ModelEntry, arrays: dict[str, np.ndarray],
                deadline: float | None, version: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Run ``arrays`` on the entry's current version; return the outputs and the version that computed
    them. See :meth:`ModelManager.infer`."""
    return await manager.infer(entry, arrays, deadline, version)

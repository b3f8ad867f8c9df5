"""What the service knows about a model: tensor specs and a ``run_batch`` callable (no TensorFlow)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["TensorSpec", "ServedModel"]


@dataclass(frozen=True)
class TensorSpec:
    """An input or output: name, NumPy dtype and shape without the batch dimension (None = any)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    value_range: tuple[float, float] | None = None
    description: str = ""

    def signature(self) -> dict:
        return {"name": self.name, "dtype": np.dtype(self.dtype).name, "shape": [-1, *[
            -1 if d is None else d for d in self.shape]], **({"range": list(self.value_range)}
                                                              if self.value_range else {})}


class ServedModel(Protocol):
    """A loaded, warmed-up model version with one or more replicas."""

    name: str
    version: str
    architecture: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] | None
    devices: list[str]

    def run_batch(self, replica: int, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass
class ModelConfig:
    """``<repo>/<model>/config.(yaml|json)``: architecture, its options, batching overrides, and
    for the user's own models (``"pkg.module:Model"`` or ``"saved_model"``) the parsed serving keys
    (``user``: outputs, inputs, labels, ...; opaque here, see ``model_zoo.user``)."""

    name: str
    architecture: str
    options: dict = field(default_factory=dict)
    batching: dict = field(default_factory=dict)
    user: Any = None

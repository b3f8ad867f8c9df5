"""What the service knows about a model: tensor specs and a ``run_batch`` callable (no TensorFlow)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["TensorSpec", "ServedModel"]


@dataclass(frozen=True)
class TensorSpec:
    """An input or output: name, NumPy dtype and shape without the batch dimension (None = any).
    ``value_range``: ``(low, high)`` the input's values must lie in (bounds included; enforced on what
    clients send unless the model's config sets ``validate_range: false``)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    value_range: tuple[float, float] | None = None
    description: str = ""

    def signature(self) -> dict:
        return {"name": self.name, "dtype": np.dtype(self.dtype).name, "shape": [-1, *[
            -1 if d is None else d for d in self.shape]], **({"range": list(self.value_range)}
                                                              if self.value_range else {})}

    def to_wire(self) -> list:
        """A JSON-able form that :meth:`from_wire` turns back into an equal spec (for the engine's snapshots)."""
        return [self.name, np.dtype(self.dtype).str, list(self.shape),
                list(self.value_range) if self.value_range else None, self.description]

    @classmethod
    def from_wire(cls, data: list) -> TensorSpec:
        name, dtype, shape, value_range, description = data
        return cls(name, np.dtype(dtype), tuple(shape), tuple(value_range) if value_range else None, description)

    def static_nbytes(self, rows: int) -> int | None:
        """Bytes of ``rows`` rows of this tensor, or None when a dimension is unknown."""
        if any(d is None for d in self.shape):
            return None
        return rows * int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


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
    (``user``: outputs, inputs, labels, ...; opaque here, see ``model_zoo.user``).

    ``validate_range``: requests whose values fall outside an input's declared ``value_range`` are
    refused (400); ``false`` in the config lets them through to the model."""

    name: str
    architecture: str
    options: dict = field(default_factory=dict)
    batching: dict = field(default_factory=dict)
    user: Any = None
    validate_range: bool = True

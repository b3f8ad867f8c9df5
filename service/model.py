"""What the service knows about a model: tensor specs and a ``run_batch`` callable (no TensorFlow)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["TensorSpec", "ServedModel", "ModelConfig", "VersionPolicy", "parse_version_labels"]


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


@dataclass(frozen=True)
class VersionPolicy:
    """Which of a model's version directories are served (TF Serving's ``model_version_policy``,
    Triton's ``version_policy``): the ``latest`` N, ``all`` of them, or ``specific`` numbers.

    In a model's config (every spelling of both servers is accepted)::

        "version_policy": {"latest": 2}            or {"latest": {"num_versions": 2}}
        "version_policy": {"all": {}}              or {"all": true}
        "version_policy": {"specific": [1, 3]}     or {"specific": {"versions": [1, 3]}}
    """

    kind: str = "latest"                 # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of ``available`` (sorted ascending)."""
        available = sorted(available)
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return [v for v in available if v in self.versions]
        return available[-self.num_versions:]

    def to_config(self) -> dict:
        """Triton's JSON spelling (``GET /v2/models/{m}/config``)."""
        if self.kind == "all":
            return {"all": {}}
        if self.kind == "specific":
            return {"specific": {"versions": list(self.versions)}}
        return {"latest": {"num_versions": self.num_versions}}

    def describe(self) -> str:
        return {"all": "all", "specific": f"specific {list(self.versions)}"}.get(
            self.kind, f"latest {self.num_versions}")

    @classmethod
    def parse(cls, raw, where: str = "version_policy") -> VersionPolicy:
        """From a config value; ``ValueError`` naming what was wrong and what is expected."""
        expected = ('{"latest": N}, {"latest": {"num_versions": N}}, {"all": {}}, {"specific": [v, ...]} or '
                    '{"specific": {"versions": [v, ...]}}')
        if raw is None:
            return cls()
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ValueError(f"{where} must be one of {expected}; got {raw!r:.80}")
        (kind, value), = raw.items()
        if kind == "latest":
            n = value.get("num_versions") if isinstance(value, dict) else value
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{where}: 'latest' needs a whole number of versions >= 1; got {value!r:.40}")
            return cls("latest", n)
        if kind == "all":
            if value not in ({}, True, None):
                raise ValueError(f"{where}: 'all' takes {{}} or true; got {value!r:.40}")
            return cls("all")
        if kind == "specific":
            vs = value.get("versions") if isinstance(value, dict) else value
            if not isinstance(vs, list) or not vs or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vs):
                raise ValueError(f"{where}: 'specific' needs a non-empty list of version numbers; got {value!r:.60}")
            return cls("specific", versions=tuple(sorted(set(vs))))
        raise ValueError(f"{where}: unknown policy {kind!r}; expected {expected}")


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def parse_version_labels(raw, where: str = "version_labels") -> dict[str, int]:
    """``{"stable": 3, "canary": 4}``: label -> version number. A label is 1-64 letters, digits, ``_-.``
    and not a number (a path segment or ``model_version`` is read as a version number when it is one)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must map label names to version numbers, like {{\"stable\": 3}}; got {raw!r:.60}")
    out = {}
    for label, version in raw.items():
        if not isinstance(label, str) or not 0 < len(label) <= 64 or not set(label) <= _LABEL_CHARS \
                or label.isdigit():
            raise ValueError(f"{where}: label {label!r:.70} must be 1-64 letters, digits, '_', '-' or '.', "
                             "and not a number")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"{where}: label {label!r} must name a version number, got {version!r:.40}")
        out[label] = version
    return out


@dataclass
class ModelConfig:
    """``<repo>/<model>/config.(yaml|json)``: architecture, its options, batching overrides, and
    for the user's own models (``"pkg.module:Model"`` or ``"saved_model"``) the parsed serving keys
    (``user``: outputs, inputs, labels, ...; opaque here, see ``model_zoo.user``).

    ``validate_range``: requests whose values fall outside an input's declared ``value_range`` are
    refused (400); ``false`` in the config lets them through to the model.

    ``version_policy``: which versions are served at once (:class:`VersionPolicy`, default the newest);
    ``version_labels``: names for version numbers (``{"stable": 3, "canary": 4}``, TF Serving's
    ``version_labels``) that requests may use instead of a number."""

    name: str
    architecture: str
    options: dict = field(default_factory=dict)
    batching: dict = field(default_factory=dict)
    user: Any = None
    validate_range: bool = True
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)

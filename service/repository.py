"""The model repository on disk and the TensorFlow-backed models (the only service module that
imports ``layers``/``model_zoo``).

Layout (Triton / TF Serving style)::

    <repo>/<model>/config.json | config.yaml   {"architecture": "mnist-convnet", "options": {...},
                                                 "batching": {"max_batch_size": 64, ...}}
    <repo>/<model>/<version>/model.npz          or a TF checkpoint (checkpoint file / model-N.index)

The highest numeric version is served.
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .model import ModelConfig, TensorSpec
from .settings import Settings, load_config_file

__all__ = ["ModelRepository", "TFModel", "find_weights"]

logger = logging.getLogger("tpserve")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CONFIG_KEYS = {"architecture", "options", "batching", "description"}


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def session_threads(settings: Settings, devices: list[str]) -> tuple[int, int]:
    """TensorFlow (intra, inter) thread counts. Explicit settings win. On CPU-only serving the
    default leaves one core to the HTTP event loop: on a 2-core machine letting TensorFlow take
    both cores cost ~25% of the served throughput (measured with bench/serve.py)."""
    intra, inter = settings.intra_op_threads, settings.inter_op_threads
    if all(d.startswith("/cpu") for d in devices):
        cpus = available_cpus()
        intra = intra or max(1, cpus - 1)
        inter = inter or (1 if cpus <= 2 else 2)
    return intra, inter


def find_weights(version_dir: Path) -> str:
    """The weights in a version directory: an ``.npz`` or a TF checkpoint prefix."""
    npz = sorted(version_dir.glob("*.npz"))
    if len(npz) == 1:
        return str(npz[0])
    if len(npz) > 1:
        raise ValueError(f"{version_dir} holds several .npz files {[p.name for p in npz]}; keep exactly one")
    if (version_dir / "checkpoint").is_file():
        return str(version_dir / "checkpoint")
    index = sorted(version_dir.glob("*.index"))
    if len(index) == 1:
        return str(index[0])[: -len(".index")]
    raise ValueError(f"{version_dir} holds no weights: expected one .npz file or a TF checkpoint "
                     "(a 'checkpoint' file or a single model-N.index/.data-* pair)")


class ModelRepository:
    """Reads ``settings.model_repository`` and builds :class:`TFModel` objects."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.model_repository)

    def versions(self, name: str) -> list[int]:
        d = self.root / name
        return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) if d.is_dir() else []

    def scan(self) -> list:
        """One ``ModelConfig`` per valid model directory, or ``(name, error)`` for a broken one."""
        if not self.root.is_dir():
            return [("<repository>", f"model repository {str(self.root)!r} is not a directory")]
        out = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                out.append(self._read_config(d))
            except ValueError as e:
                out.append((d.name, str(e)))
        return out

    def _read_config(self, d: Path) -> ModelConfig:
        import model_zoo

        if not _NAME_RE.match(d.name):
            raise ValueError(f"model directory name {d.name!r} must match {_NAME_RE.pattern}")
        files = [d / n for n in ("config.yaml", "config.yml", "config.json") if (d / n).is_file()]
        if len(files) != 1:
            raise ValueError(f"{d} must hold exactly one config.yaml or config.json, found {len(files)}")
        raw = load_config_file(files[0])
        unknown = sorted(set(raw) - _CONFIG_KEYS)
        if unknown:
            raise ValueError(f"{files[0]}: unknown key(s) {unknown}; expected {sorted(_CONFIG_KEYS)}")
        arch = raw.get("architecture")
        if arch not in model_zoo.names():
            raise ValueError(f"{files[0]}: unknown architecture {arch!r}; valid choices: {model_zoo.names()}")
        options, batching = raw.get("options") or {}, raw.get("batching") or {}
        if not isinstance(options, dict) or not isinstance(batching, dict):
            raise ValueError(f"{files[0]}: 'options' and 'batching' must be mappings")
        if not self.versions(d.name):
            raise ValueError(f"{d} has no numeric version directory (e.g. {d}/1/model.npz)")
        return ModelConfig(d.name, arch, options, batching)

    def load(self, config: ModelConfig, max_batch_size: int, version: int | None = None) -> TFModel:
        """Build, restore (strictly: every variable must be in the file) and warm up a model version."""
        versions = self.versions(config.name)
        if version is None:
            if not versions:
                raise ValueError(f"model {config.name!r} has no version directory")
            version = versions[-1]
        elif version not in versions:
            raise ValueError(f"model {config.name!r} has no version {version}; versions: {versions}")
        weights = find_weights(self.root / config.name / str(version))
        model = TFModel(config, str(version), weights, self.settings)
        try:
            if self.settings.warmup:
                model.warmup(max_batch_size)
        except BaseException:
            model.close()
            raise
        return model


class TFModel:
    """A zoo architecture restored from a weights file, one replica per device."""

    def __init__(self, config: ModelConfig, version: str, weights: str, settings: Settings):
        import layers
        import model_zoo

        self.name = config.name
        self.version = version
        self.architecture = config.architecture
        self.weights = weights
        zoo = model_zoo.get(config.architecture, **config.options)
        self.zoo = zoo
        self.devices = settings.device_list(layers.gpu_count())
        self.inputs = [TensorSpec(i.name, np.dtype(i.dtype), tuple(i.shape), tuple(i.value_range), i.description)
                       for i in zoo.inputs]
        self._output_names = [o.name for o in zoo.outputs]
        self.labels = list(zoo.labels) if zoo.labels else None
        self.preprocess_image = zoo.preprocess_image   # uploads: decode -> this -> one input row
        intra, inter = session_threads(settings, self.devices)
        pconfig = layers.PredictConfig(
            model=zoo.model, input_names=[i.name for i in zoo.inputs], output_names=[o.tensor for o in zoo.outputs],
            session_init=layers.SmartInit(weights), intra_op_threads=intra, inter_op_threads=inter)
        self._predictor = layers.MultiDevicePredictor(pconfig, devices=self.devices)
        self._replicas = self._predictor.replicas
        self._in_names = [i.name for i in self.inputs]
        one = self.run_batch(0, {s.name: self._filler(s, 1) for s in self.inputs})
        self.outputs = [TensorSpec(n, one[n].dtype, tuple(one[n].shape[1:])) for n in self._output_names]

    @staticmethod
    def _filler(spec: TensorSpec, rows: int) -> np.ndarray:
        low = spec.value_range[0] if spec.value_range else 0
        return np.full((rows, *[d or 1 for d in spec.shape]), low, dtype=spec.dtype)

    def run_batch(self, replica: int, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._replicas[replica](*[inputs[n] for n in self._in_names])
        return dict(zip(self._output_names, outs, strict=True))

    def warmup(self, max_batch_size: int):
        """Run every power-of-two batch size up to ``max_batch_size`` (and it) on every replica, so
        the first real requests do not pay for graph optimisation and memory allocation."""
        sizes = sorted({min(2 ** i, max_batch_size) for i in range(max_batch_size.bit_length() + 1)})
        for r in range(len(self._replicas)):
            for bs in sizes:
                self.run_batch(r, {s.name: self._filler(s, bs) for s in self.inputs})
        logger.info("model %s v%s warmed up: batch sizes %s on %s", self.name, self.version, sizes, self.devices)

    def close(self):
        self._predictor.close()

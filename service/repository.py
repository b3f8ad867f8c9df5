"""The model repository on disk and the TensorFlow-backed models (the only service module that
imports ``layers``/``model_zoo``).

Layout (Triton / TF Serving style)::

    <repo>/<model>/config.json | config.yaml   {"architecture": "mnist-convnet", "options": {...},
                                                 "batching": {"max_batch_size": 64, ...},
                                                 "validate_range": true,
                                                 "version_policy": {"latest": 2},
                                                 "version_labels": {"stable": 3, "canary": 4}}
    <repo>/<model>/<version>/model.npz          or a TF checkpoint (checkpoint file / model-N.index)

The user's own models (``"architecture": "pkg.module:Model"`` with ``"outputs"``, or
``"saved_model"`` with a SavedModel as the version directory) are described in ``model_zoo.user``.

Which numeric versions are served is the config's ``version_policy`` (default: the highest one;
see :class:`service.model.VersionPolicy`); ``version_labels`` name versions for requests.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .model import ModelConfig, TensorSpec, VersionPolicy, parse_version_labels
from .process import available_cpus
from .settings import Settings, load_config_file

__all__ = ["ModelRepository", "TFModel", "find_weights", "zoo_options"]

logger = logging.getLogger("tpserve")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CONFIG_KEYS = {"architecture", "options", "batching", "description", "validate_range", "version_policy",
                "version_labels"}


def session_threads(settings: Settings, devices: list[str]) -> tuple[int, int]:
    """TensorFlow (intra, inter) thread counts. Explicit settings win. On CPU-only serving the
    default leaves one core to the HTTP event loop of the embedded server: there, on a 2-core machine,
    letting TensorFlow take both cores cost ~25% of the served throughput (measured with bench/serve.py).
    The multi-process server sets every core instead (:func:`service.supervisor.serve`)."""
    intra, inter = settings.intra_op_threads, settings.inter_op_threads
    if all(d.startswith("/cpu") for d in devices):
        cpus = available_cpus()
        intra = intra or max(1, cpus - 1)
        inter = inter or (1 if cpus <= 2 else 2)
    return intra, inter


def zoo_options(architecture: str, options: dict, devices: list[str]) -> dict:
    """A zoo architecture's options for these devices: on GPUs only, an architecture with a
    ``data_format`` option the config leaves unset is built NCHW, tensorpack's GPU layout and cuDNN's
    native one (on CPU NHWC stays the default: TensorFlow's CPU kernels are NHWC). Weights are the
    same in both layouts; clients still send NHWC images (the graph transposes them)."""
    from model_zoo.registry import get_config_class

    if "data_format" in options or not devices or not all(d.startswith("/gpu") for d in devices):
        return options
    try:
        fields = {f.name for f in dataclasses.fields(get_config_class(architecture))}
    except (KeyError, ValueError, TypeError):
        return options      # unknown architecture: model_zoo.get reports it
    return {**options, "data_format": "NCHW"} if "data_format" in fields else options


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
    hint = " (it holds a SavedModel: set \"architecture\": \"saved_model\")" \
        if (version_dir / "saved_model.pb").is_file() else ""
    raise ValueError(f"{version_dir} holds no weights: expected one .npz file or a TF checkpoint "
                     f"(a 'checkpoint' file or a single model-N.index/.data-* pair){hint}")


class ModelRepository:
    """Reads ``settings.model_repository`` and builds :class:`TFModel` objects."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.model_repository)

    def versions(self, name: str) -> list[int]:
        d = self.root / name
        return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) if d.is_dir() else []

    def fingerprint(self, name: str, version: int) -> tuple:
        """What identifies a version's files: (relative path, size, mtime, inode) of each. A version that
        failed to load is retried only once this changes (see ``ModelManager.poll_once``); a rewritten
        or replaced file changes its mtime or inode even when its size stays the same."""
        d = self.root / name / str(version)
        stats = ((p, p.stat()) for p in d.rglob("*") if p.is_file())
        return tuple(sorted((str(p.relative_to(d)), st.st_size, st.st_mtime_ns, st.st_ino) for p, st in stats))

    def scan(self) -> list:
        """One ``ModelConfig`` per valid model directory, or ``(name, error)`` for a broken one (errors
        name files relative to the repository: they are shown in responses)."""
        if not self.root.is_dir():
            logger.error("model repository %r is not a directory", str(self.root))
            return [("<repository>", "the model repository (TPSERVE_MODEL_REPOSITORY) is not a directory; "
                                     "the server log names the path")]
        out = []
        try:
            dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as e:
            return [("<repository>", f"reading the model repository failed: {self.relative(str(e))}")]
        for d in dirs:
            out.append(self.read_config(d.name))
        return out

    def read_config(self, name: str):
        """One model directory's ``ModelConfig``, or ``(name, error)`` when it is broken or absent."""
        d = self.root / name
        if not _NAME_RE.match(name) or not d.is_dir():
            return name, f"no model directory {name!r} in the model repository"
        try:
            return self._read_config(d)
        except (ValueError, OSError) as e:
            return name, self.relative(str(e))

    def _read_config(self, d: Path) -> ModelConfig:
        import model_zoo

        if not _NAME_RE.match(d.name):
            raise ValueError(f"model directory name {d.name!r} must match {_NAME_RE.pattern}")
        files = [d / n for n in ("config.yaml", "config.yml", "config.json") if (d / n).is_file()]
        if len(files) != 1:
            raise ValueError(f"{d} must hold exactly one config.yaml or config.json, found {len(files)}")
        raw = load_config_file(files[0])
        arch = raw.get("architecture")
        user = model_zoo.user.is_user_architecture(arch)
        keys = _CONFIG_KEYS | set(model_zoo.user.CONFIG_KEYS) if user else _CONFIG_KEYS
        unknown = sorted(set(raw) - keys)
        if unknown:
            raise ValueError(f"{files[0]}: unknown key(s) {unknown}; expected {sorted(keys)}")
        if not user and arch not in model_zoo.names():
            raise ValueError(f"{files[0]}: unknown architecture {arch!r}; valid choices: {model_zoo.names()}, "
                             "'package.module:ModelDescClass' or 'saved_model'")
        options, batching = raw.get("options") or {}, raw.get("batching") or {}
        if not isinstance(options, dict) or not isinstance(batching, dict):
            raise ValueError(f"{files[0]}: 'options' and 'batching' must be mappings")
        validate_range = raw.get("validate_range", True)
        if not isinstance(validate_range, bool):
            raise ValueError(f"{files[0]}: 'validate_range' must be true or false, got {validate_range!r:.40}")
        spec = model_zoo.user.parse_config(raw, self.root, str(files[0].relative_to(self.root))) if user else None
        policy = VersionPolicy.parse(raw.get("version_policy"), f"{files[0]}: version_policy")
        labels = parse_version_labels(raw.get("version_labels"), f"{files[0]}: version_labels")
        if not self.versions(d.name):
            raise ValueError(f"{d} has no numeric version directory (e.g. {d}/1/model.npz)")
        return ModelConfig(d.name, arch, options, batching, user=spec, validate_range=validate_range,
                           version_policy=policy, version_labels=labels)

    def load(self, config: ModelConfig, max_batch_size: int, version: int | None = None) -> TFModel:
        """Build, restore (strictly: every variable must be in the file) and warm up a model version."""
        versions = self.versions(config.name)
        if version is None:
            if not versions:
                raise ValueError(f"model {config.name!r} has no version directory")
            version = versions[-1]
        elif version not in versions:
            raise ValueError(f"model {config.name!r} has no version {version}; versions: {versions}")
        version_dir = self.root / config.name / str(version)
        rss0 = _resident_bytes()
        try:
            weights = str(version_dir) if config.architecture == "saved_model" else find_weights(version_dir)
            model = TFModel(config, str(version), weights, self.settings)
        except Exception as e:
            public = self._relative_paths(e)
            if public is e:
                raise
            raise public from e
        try:
            if self.settings.warmup:
                model.warmup(max_batch_size)
        except BaseException as e:
            model.close()
            public = self._relative_paths(e) if isinstance(e, Exception) else e
            if public is e:
                raise
            raise public from e
        rss1 = _resident_bytes()
        if rss0 is not None and rss1 is not None:
            model.memory["resident_growth_bytes"] = max(0, rss1 - rss0)
        return model

    def relative(self, text: str) -> str:
        """``text`` with paths inside the repository written relative to it (``digits/1/model.npz``) and
        the repository's own location as ``<model repository>``: messages reach responses, and the
        server's absolute layout is nobody's business."""
        spellings = {str(self.root), os.path.abspath(self.root), str(self.root.resolve())}
        for root in sorted(spellings, key=len, reverse=True):
            if root in (".", ""):
                continue
            # not inside a longer path or word (e.g. the repository "models" in "/srv/models2/")
            text = re.sub(rf"(?<![\w.~/-]){re.escape(root)}{re.escape(os.sep)}", "", text)
            if os.path.isabs(root):
                text = re.sub(rf"(?<![\w.~/-]){re.escape(root)}(?![\w.~-])", "<model repository>", text)
        return text

    def _relative_paths(self, error: Exception) -> Exception:
        """``error`` with its message relative to the repository (see :meth:`relative`): rewritten in
        place when its message is its single argument (or an OSError's file names), else a RuntimeError
        that names the original type."""
        text = str(error)
        public = self.relative(text)
        if public == text:
            return error
        if len(error.args) == 1 and isinstance(error.args[0], str):
            error.args = (self.relative(error.args[0]),)
        elif isinstance(error, OSError):
            error.filename = self.relative(error.filename) if isinstance(error.filename, str) else error.filename
            error.filename2 = self.relative(error.filename2) if isinstance(error.filename2, str) else error.filename2
        if self.relative(str(error)) == str(error):
            return error
        return RuntimeError(f"{type(error).__name__}: {public}")


def _resident_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc/self/statm``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class TFModel:
    """A zoo architecture or a user ModelDesc restored from a weights file, or a SavedModel (then
    ``weights`` is its directory); one replica per device."""

    def __init__(self, config: ModelConfig, version: str, weights: str, settings: Settings):
        import layers
        import model_zoo

        self.name = config.name
        self.version = version
        self.architecture = config.architecture
        self.weights = weights
        self.devices = settings.device_list(layers.gpu_count())
        intra, inter = session_threads(settings, self.devices)
        if config.architecture == model_zoo.user.SAVED_MODEL:
            zoo, self._predictor = model_zoo.user.load_saved_model(config.user, weights, self.devices, intra, inter)
        else:
            zoo = model_zoo.user.build(config.user) if config.user is not None else \
                model_zoo.get(config.architecture, **zoo_options(config.architecture, config.options, self.devices))
            pconfig = layers.PredictConfig(
                model=zoo.model, input_names=zoo.input_names, output_names=[o.tensor for o in zoo.outputs],
                session_init=layers.SmartInit(weights), intra_op_threads=intra, inter_op_threads=inter)
            self._predictor = layers.MultiDevicePredictor(pconfig, devices=self.devices)
        self.zoo = zoo
        self.inputs = [TensorSpec(i.name, np.dtype(i.dtype), tuple(i.shape), tuple(i.value_range), i.description)
                       for i in zoo.inputs]
        self._output_names = [o.name for o in zoo.outputs]
        self.labels = list(zoo.labels) if zoo.labels else None
        # uploads: decode -> this -> one input row; None: the model takes no images
        self.preprocess_image = zoo.preprocess_image if zoo.takes_images else None
        self._replicas = self._predictor.replicas
        self._in_names = [i.name for i in self.inputs]
        try:
            one = self.run_batch(0, {s.name: self._filler(s, 1) for s in self.inputs})
            self.outputs = [TensorSpec(n, one[n].dtype, tuple(one[n].shape[1:])) for n in self._output_names]
        except BaseException:
            self._predictor.close()   # nobody else holds this half-built model: its session would leak
            raise
        # what this version holds in memory (``/models``): its variables over every replica, and how much
        # the process grew while loading and warming it up (set by ModelRepository.load)
        self.memory = {"variables_bytes": self._predictor.variable_bytes(), "replicas": len(self._replicas)}

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

"""Model lifecycle: load every configured model, keep its state, batcher and metrics (no TensorFlow).

The TensorFlow side is behind the ``repository`` object (see :mod:`service.repository`):
``repository.scan() -> list[ModelConfig | (name, error)]`` and ``repository.load(config) -> ServedModel``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from .batcher import DynamicBatcher
from .errors import ModelNotReady, UnknownModel
from .metrics import Metrics
from .model import ModelConfig, ServedModel
from .settings import BatchingOptions, Settings

__all__ = ["ModelManager", "ModelEntry"]

logger = logging.getLogger("tpserve")


@dataclass
class ModelEntry:
    name: str
    config: ModelConfig | None
    state: str = "LOADING"            # LOADING -> READY | FAILED
    error: str | None = None
    model: ServedModel | None = None
    batcher: DynamicBatcher | None = None
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    load_seconds: float | None = None

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def status(self) -> dict:
        out = {"name": self.name, "state": self.state, "version": self.version}
        if self.config is not None:
            out["architecture"] = self.config.architecture
            out["options"] = self.config.options
        if self.error:
            out["error"] = self.error
        if self.model is not None:
            out["inputs"] = [s.signature() for s in self.model.inputs]
            out["outputs"] = [s.signature() for s in self.model.outputs]
            out["labels"] = self.model.labels
            out["devices"] = self.model.devices
            out["batching"] = self.batching.model_dump()
        return out


class ModelManager:
    def __init__(self, settings: Settings, metrics: Metrics, repository):
        self.settings = settings
        self.metrics = metrics
        self.repository = repository
        self.entries: dict[str, ModelEntry] = {}
        self.scanned = False

    async def start(self):
        """Scan the repository and load every model (one at a time, off the event loop)."""
        try:
            items = await asyncio.to_thread(self.repository.scan)
        except Exception as e:  # noqa: BLE001 - keep serving /healthz and say why in /readyz
            items = [("<repository>", f"scanning the model repository failed: {type(e).__name__}: {e}")]
        for item in items:
            if isinstance(item, ModelConfig):
                self.entries[item.name] = ModelEntry(item.name, item)
            else:
                name, error = item
                self.entries[name] = ModelEntry(name, None, state="FAILED", error=error)
                self.metrics.model_load_failures.labels(name).inc()
                self.metrics.set_model_state(name, "none", "FAILED")
                logger.error("model %s: %s", name, error)
        self.scanned = True
        for entry in self.entries.values():
            if entry.state == "LOADING":
                await self._load(entry)

    async def _load(self, entry: ModelEntry):
        self.metrics.set_model_state(entry.name, "none", "LOADING")
        t0 = time.monotonic()
        try:
            entry.batching = BatchingOptions(**{**self.settings.batching.model_dump(), **entry.config.batching})
            model = await asyncio.to_thread(self.repository.load, entry.config, entry.batching.max_batch_size)
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the others
            entry.state, entry.error = "FAILED", f"{type(e).__name__}: {e}"
            self.metrics.model_load_failures.labels(entry.name).inc()
            self.metrics.set_model_state(entry.name, "none", "FAILED")
            logger.error("model %s failed to load: %s", entry.name, entry.error)
            return
        b = entry.batching
        batcher = DynamicBatcher(model.run_batch, replicas=len(model.devices), max_batch_size=b.max_batch_size,
                                 max_queue_delay_s=b.max_queue_delay_ms / 1000.0, max_queue_rows=b.max_queue_size,
                                 inflight_per_replica=b.inflight_per_replica,
                                 observer=self.metrics.observer(entry.name, model.devices), name=entry.name)
        await batcher.start()
        entry.model, entry.batcher, entry.state, entry.error = model, batcher, "READY", None
        entry.load_seconds = time.monotonic() - t0
        self.metrics.model_load_seconds.labels(entry.name).set(entry.load_seconds)
        self.metrics.set_model_state(entry.name, model.version, "READY")
        logger.info("model %s version %s ready on %s in %.2f s", entry.name, model.version,
                    ", ".join(model.devices), entry.load_seconds)

    async def stop(self, timeout_s: float = 30.0):
        for entry in self.entries.values():
            if entry.batcher is not None:
                await entry.batcher.stop(timeout_s)
            if entry.model is not None:
                await asyncio.to_thread(entry.model.close)

    def readiness(self) -> tuple[bool, list[str]]:
        if not self.scanned:
            return False, ["the model repository is being scanned"]
        if not self.entries:
            return False, ["no models configured"]
        reasons = [f"model {e.name!r} is {e.state}" + (f": {e.error}" if e.error else "")
                   for e in self.entries.values() if e.state != "READY"]
        return not reasons, reasons

    def get(self, name: str | None) -> ModelEntry:
        """The entry for ``name`` (or the only model when ``name`` is None); must be READY."""
        if not self.scanned:
            raise ModelNotReady("the server is starting: the model repository is being scanned")
        if name is None:
            if len(self.entries) != 1:
                raise UnknownModel(f"several models are served; name one in 'model': {sorted(self.entries)}",
                                   field="model", expected=sorted(self.entries))
            entry = next(iter(self.entries.values()))
        else:
            if not isinstance(name, str) or name not in self.entries:
                raise UnknownModel(f"unknown model {str(name)[:100]!r}; served models: {sorted(self.entries)}",
                                   field="model", expected=sorted(self.entries), received=str(name)[:100])
            entry = self.entries[name]
        if entry.state != "READY":
            raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""),
                                field="model")
        return entry

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
from .errors import ModelNotReady, NotAcceptingWork, UnknownModel
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

    def health(self) -> str | None:
        """None while a READY model can serve; else why not (failing or stuck batches, see the batcher)."""
        return self.batcher.health() if self.state == "READY" and self.batcher is not None else None

    def status(self) -> dict:
        unhealthy = self.health()
        out = {"name": self.name, "state": "UNAVAILABLE" if unhealthy else self.state, "version": self.version}
        if self.config is not None:
            out["architecture"] = self.config.architecture
            out["options"] = self.config.options
        if self.error or unhealthy:
            out["error"] = "; ".join(x for x in (unhealthy, self.error) if x)
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
        self.draining = False        # SIGTERM seen: readiness 503
        self.accepting = True        # False after the drain grace window: inference gets 503
        self._reload_lock = asyncio.Lock()
        self._failed_versions: dict[str, set[str]] = {}
        self._poller: asyncio.Task | None = None

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
        self.start_polling()

    async def _load(self, entry: ModelEntry, version: int | None = None, background: bool = False) -> bool:
        """Load (or reload) a model version; on success swap it in atomically and retire the old one.

        A failed reload leaves the serving version untouched. Returns True on success."""
        if not background:
            self.metrics.set_model_state(entry.name, "none", "LOADING")
        t0 = time.monotonic()
        try:
            batching = BatchingOptions(**{**self.settings.batching.model_dump(), **entry.config.batching})
            model = await asyncio.to_thread(self.repository.load, entry.config, batching.max_batch_size, version)
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the others
            error = f"{type(e).__name__}: {e}"
            self.metrics.model_load_failures.labels(entry.name).inc()
            if version is not None:
                self._failed_versions.setdefault(entry.name, set()).add(str(version))
            if background and entry.state == "READY":
                entry.error = f"version {version} failed to load, still serving {entry.version}: {error}"
                logger.error("model %s: %s", entry.name, entry.error)
            else:
                entry.state, entry.error = "FAILED", error
                self.metrics.set_model_state(entry.name, "none", "FAILED")
                logger.error("model %s failed to load: %s", entry.name, error)
            return False
        b = batching
        batcher = DynamicBatcher(model.run_batch, replicas=len(model.devices), max_batch_size=b.max_batch_size,
                                 max_queue_delay_s=b.max_queue_delay_ms / 1000.0, max_queue_rows=b.max_queue_size,
                                 inflight_per_replica=b.inflight_per_replica,
                                 observer=self.metrics.observer(entry.name, model.devices), name=entry.name,
                                 unhealthy_after_failures=self.settings.unhealthy_after_failed_batches,
                                 stuck_batch_s=self.settings.stuck_batch_timeout_s)
        await batcher.start()
        old_model, old_batcher = entry.model, entry.batcher
        # The swap: new requests see the new batcher from here on; requests already holding the old
        # batcher finish on the old version.
        entry.model, entry.batcher, entry.batching = model, batcher, batching
        entry.state, entry.error = "READY", None
        entry.load_seconds = time.monotonic() - t0
        self.metrics.model_load_seconds.labels(entry.name).set(entry.load_seconds)
        self.metrics.set_model_state(entry.name, model.version, "READY")
        logger.info("model %s version %s ready on %s in %.2f s", entry.name, model.version,
                    ", ".join(model.devices), entry.load_seconds)
        if old_batcher is not None:
            asyncio.get_running_loop().create_task(self._retire(entry.name, old_model, old_batcher))
        return True

    async def _retire(self, name, model, batcher):
        await batcher.stop(self.settings.shutdown_timeout_s)
        await asyncio.to_thread(model.close)
        logger.info("model %s version %s released", name, model.version)

    # ----------------------------------------------------------------------------- versions
    async def poll_once(self, only: str | None = None) -> dict[str, str]:
        """Load the newest version of each model if it is newer than the served one."""
        results = {}
        async with self._reload_lock:
            for entry in list(self.entries.values()):
                if entry.config is None or (only is not None and entry.name != only):
                    continue
                versions = await asyncio.to_thread(self.repository.versions, entry.name)
                if not versions:
                    continue
                newest = str(versions[-1])
                current = entry.version
                if current is not None and int(newest) <= int(current):
                    results[entry.name] = f"serving {current}"
                    continue
                if only is None and newest in self._failed_versions.get(entry.name, set()):
                    continue
                ok = await self._load(entry, int(newest), background=entry.state == "READY")
                results[entry.name] = f"loaded {newest}" if ok else f"failed {newest}: {entry.error}"
        return results

    async def _poll_forever(self):
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - polling must survive a bad repository state
                logger.exception("repository poll failed")

    def start_polling(self):
        if self.settings.poll_interval_s > 0 and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self, timeout_s: float = 30.0):
        if self._poller is not None:
            self._poller.cancel()
        for entry in self.entries.values():
            if entry.batcher is not None:
                await entry.batcher.stop(timeout_s)
            if entry.model is not None:
                await asyncio.to_thread(entry.model.close)

    def readiness(self) -> tuple[bool, list[str]]:
        if self.draining:
            return False, ["the server is shutting down (draining)"]
        if not self.scanned:
            return False, ["the model repository is being scanned"]
        if not self.entries:
            return False, ["no models configured"]
        reasons = [f"model {e.name!r} is {e.state}" + (f": {e.error}" if e.error else "")
                   for e in self.entries.values() if e.state != "READY"]
        reasons += [f"model {e.name!r} is UNAVAILABLE: {why}" for e in self.entries.values()
                    if (why := e.health()) is not None]
        return not reasons, reasons

    def get(self, name: str | None, version: str | None = None) -> ModelEntry:
        """The entry for ``name`` (or the only model when ``name`` is None); must be READY and, when
        ``version`` is given, serving that version."""
        if not self.accepting:
            raise NotAcceptingWork("the server is shutting down and accepts no new inference requests")
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
        if version is not None and str(version) != entry.version:
            raise UnknownModel(f"model {entry.name!r} version {str(version)[:20]!r} is not served; serving version "
                               f"{entry.version}", field="version", expected=entry.version, received=str(version)[:20])
        return entry

    def find(self, name: str) -> ModelEntry:
        """The entry for ``name`` in any state (for status endpoints)."""
        if name not in self.entries:
            raise UnknownModel(f"unknown model {str(name)[:100]!r}; models: {sorted(self.entries)}", field="model",
                               expected=sorted(self.entries), received=str(name)[:100])
        return self.entries[name]

"""Model lifecycle: load every configured model, keep its state, batcher and metrics (no TensorFlow).

The TensorFlow side is behind the ``repository`` object (see :mod:`service.repository`):
``repository.scan() -> list[ModelConfig | (name, error)]``, ``repository.versions(name) -> [int]``,
``repository.load(config, max_batch_size, version) -> ServedModel`` and, optionally,
``repository.fingerprint(name, version)``: a value that changes when a version's files change (a
version that failed to load is not retried until it does; without the method, never).

Versions: the newest version present is served. A newer one is loaded in the background and swapped
in; when the served version's directory is removed, the newest remaining one is loaded (roll back).

Shutdown (:meth:`ModelManager.stop`) has one deadline for everything: loading and polling are
cancelled, every model's batcher drains concurrently, models are closed; work still running at the
deadline is abandoned (its requests answered 503), reported in the log and counted in
``tpserve_abandoned_batches_total``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .batcher import DynamicBatcher, ShuttingDown
from .errors import ModelNotReady, NotAcceptingWork, UnknownModel
from .metrics import Metrics
from .model import ModelConfig, ServedModel
from .settings import BatchingOptions, Settings
from .threads import in_daemon_thread
from .validation import JsonBudget, json_budget

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
    failed_version: str | None = None   # a newer version that failed to load while this one kept serving

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
        # time.monotonic() instant by which shutdown must be over; the SIGTERM drain sets it, so that
        # the drain and stop() share one deadline (else stop() sets it to shutdown_timeout_s from its call)
        self.shutdown_deadline: float | None = None
        self.shutdown_report: dict | None = None
        self._reload_lock = asyncio.Lock()
        # name -> version -> (fingerprint of its files when it failed, error): not retried until they change
        self._failed: dict[str, dict[str, tuple[object, str]]] = {}
        self._poller: asyncio.Task | None = None
        self._loading: asyncio.Task | None = None
        # retire task -> (model name, old model, its batcher; None once that batcher has stopped)
        self._retiring: dict[asyncio.Task, tuple[str, ServedModel, DynamicBatcher | None]] = {}
        self._stopped = False
        self._budgets: dict[tuple, tuple[JsonBudget | None]] = {}

    async def start(self):
        """Scan the repository and load every model (one at a time, off the event loop). Run as a task:
        :meth:`stop` cancels it."""
        self._loading = asyncio.current_task()
        try:
            await self._scan_and_load()
        finally:
            self._loading = None

    async def _scan_and_load(self):
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

    async def _newest(self, name: str) -> str | None:
        versions = await asyncio.to_thread(self.repository.versions, name)
        return str(versions[-1]) if versions else None

    async def _fingerprint(self, name: str, version: str) -> object:
        fingerprint = getattr(self.repository, "fingerprint", None)
        if fingerprint is None:
            return None
        try:
            return await asyncio.to_thread(fingerprint, name, int(version))
        except (OSError, ValueError):
            return None       # the version directory went away: compared as "changed" by poll_once

    async def _build(self, config: ModelConfig, max_batch_size: int, version: int | None) -> ServedModel:
        """``repository.load`` on a daemon thread. Cancelled (by stop()), the thread cannot be interrupted:
        the model it returns is closed as soon as it exists, never served."""
        future = in_daemon_thread(self.repository.load, config, max_batch_size, version, name=f"load-{config.name}")
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_built_model)
            raise

    async def _load(self, entry: ModelEntry, version: int | None = None, background: bool = False) -> bool:
        """Load (or reload) a model version (None: the newest); on success swap it in atomically and
        retire the old one.

        ``background``: a model is serving; a failure leaves it serving (else the entry is FAILED).
        A failure is remembered with the version files' fingerprint (see :meth:`poll_once`). After
        :meth:`stop` nothing is swapped in. Returns True on success."""
        if not background:
            self.metrics.set_model_state(entry.name, "none", "LOADING")
        t0 = time.monotonic()
        key = str(version) if version is not None else await self._newest(entry.name)
        fingerprint = await self._fingerprint(entry.name, key) if key is not None else None
        try:
            batching = BatchingOptions(**{**self.settings.batching.model_dump(), **entry.config.batching})
            model = await self._build(entry.config, batching.max_batch_size, version)
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the others
            error = f"{type(e).__name__}: {e}"
            self.metrics.model_load_failures.labels(entry.name).inc()
            if key is not None:
                self._failed.setdefault(entry.name, {})[key] = (fingerprint, error)
            if background and entry.state == "READY":
                entry.error = f"version {key} failed to load, still serving {entry.version}: {error}"
                entry.failed_version = key
                logger.error("model %s: %s", entry.name, entry.error)
            else:
                entry.state, entry.error = "FAILED", error
                self.metrics.set_model_state(entry.name, "none", "FAILED")
                logger.error("model %s failed to load: %s", entry.name, error)
            return False
        if self._stopped:
            # stop() ran while this version was loading: shutting down, never swap a model in
            in_daemon_thread(model.close, name=f"close-{entry.name}")
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
        # The swap (model and batcher in one statement, no await: a request reads both together and
        # gets one version): new requests see the new batcher from here on; requests already holding
        # the old batcher finish on the old version.
        entry.model, entry.batcher, entry.batching = model, batcher, batching
        entry.state, entry.error, entry.failed_version = "READY", None, None
        self._failed.get(entry.name, {}).pop(str(model.version), None)
        entry.load_seconds = time.monotonic() - t0
        self.metrics.model_load_seconds.labels(entry.name).set(entry.load_seconds)
        self.metrics.set_model_state(entry.name, model.version, "READY")
        logger.info("model %s version %s ready on %s in %.2f s", entry.name, model.version,
                    ", ".join(model.devices), entry.load_seconds)
        if old_batcher is not None:
            task = asyncio.get_running_loop().create_task(self._retire(entry.name, old_model, old_batcher))
            self._retiring[task] = (entry.name, old_model, old_batcher)
            task.add_done_callback(lambda t: self._retiring.pop(t, None))
        return True

    async def _retire(self, name: str, model: ServedModel, batcher: DynamicBatcher):
        """Let the old version's queued and running requests finish (up to shutdown_timeout_s), then close it."""
        abandoned = await batcher.stop(self.settings.shutdown_timeout_s)
        self._retiring[asyncio.current_task()] = (name, model, None)    # only the close is left
        self._report_abandoned(name, model.version, abandoned, "retiring it after a reload")
        await self._close(name, model, time.monotonic() + self.settings.shutdown_timeout_s)
        logger.info("model %s version %s released", name, model.version)

    def _report_abandoned(self, name: str, version: str, batches: int, when: str):
        if batches:
            self.metrics.abandoned_batches.labels(name).inc(batches)
            logger.error("model %s version %s: %d batch(es) still running after %g s while %s: abandoned, their "
                         "requests answered 503 (TPSERVE_SHUTDOWN_TIMEOUT_S)", name, version, batches,
                         self.settings.shutdown_timeout_s, when)

    async def _close(self, name: str, model: ServedModel, deadline: float) -> bool:
        """``model.close()`` on a daemon thread, waited for until ``deadline``. True if it returned."""
        future = asyncio.wrap_future(in_daemon_thread(model.close, name=f"close-{name}"))
        done, _ = await asyncio.wait([future], timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            logger.error("model %s version %s: close() had not returned by the shutdown deadline; left behind",
                         name, model.version)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())   # no "never retrieved" noise
            return False
        if future.exception() is not None:
            logger.error("model %s version %s: close() failed: %r", name, model.version, future.exception())
        return True

    # ----------------------------------------------------------------------------- versions
    async def poll_once(self, only: str | None = None) -> dict[str, str]:
        """Serve the newest version of each model (or of ``only``): load it when it differs from the
        served one — newer, or older because the served version's directory was removed (roll back).

        A version that failed to load is not retried while its files are unchanged (same
        ``repository.fingerprint``); the answer repeats its error. Returns {model: what happened}."""
        results = {}
        async with self._reload_lock:
            for entry in list(self.entries.values()):
                if self._stopped:
                    break
                if entry.config is None or (only is not None and entry.name != only):
                    continue
                results[entry.name] = await self._poll_entry(entry)
        return results

    async def _poll_entry(self, entry: ModelEntry) -> str:
        versions = [str(v) for v in await asyncio.to_thread(self.repository.versions, entry.name)]
        failed = self._failed.setdefault(entry.name, {})
        for gone in [v for v in failed if v not in versions]:
            del failed[gone]                     # its directory was removed: forget it, clear its error
            if entry.failed_version == gone:
                entry.failed_version, entry.error = None, None
        current = entry.version
        if not versions:
            return f"serving {current}; no version directory left" if current else "no version directory"
        newest = versions[-1]
        if newest == current:
            return f"serving {current}"
        if newest in failed:
            fingerprint, error = failed[newest]
            if await self._fingerprint(entry.name, newest) == fingerprint:
                return f"failed {newest}: {error} (not retried: its files have not changed since that attempt)"
        if current is not None and current not in versions:
            logger.warning("model %s: the directory of the served version %s was removed; rolling back to "
                           "version %s", entry.name, current, newest)
        ok = await self._load(entry, int(newest), background=entry.state == "READY")
        if not ok and self._stopped:
            return f"not loaded {newest}: the server is shutting down"
        return f"loaded {newest}" if ok else f"failed {newest}: {entry.error}"

    async def _poll_forever(self):
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - polling must survive a bad repository state
                logger.exception("repository poll failed")

    def start_polling(self):
        if self.settings.poll_interval_s > 0 and self._poller is None and not self._stopped:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self, timeout_s: float | None = None) -> dict:
        """Shut down within one deadline: ``shutdown_deadline`` if the drain set it, else ``timeout_s``
        (default ``shutdown_timeout_s``) from now.

        Loading and polling are cancelled at once (a load already running in its thread is closed when
        it ends, never swapped in); every batcher, including those of versions still retiring after a
        reload (their retire task is cancelled and its work done here), drains concurrently until the
        deadline; then the models are closed (waited for until the deadline). Returns (and keeps in ``shutdown_report``) ``{"timeout_s", "abandoned": {model:
        batches still running at the deadline}, "unclosed": [models whose close() had not returned]}``.
        """
        timeout_s = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        if self.shutdown_deadline is None:
            self.shutdown_deadline = time.monotonic() + timeout_s
        deadline = self.shutdown_deadline
        self._stopped = True
        retiring = [(task, item) for task, item in self._retiring.items() if not task.done()]
        # a retire task still draining its batcher is cancelled (that batcher is drained below, with this
        # deadline); one already closing its model is waited for, like the other closes
        cancel = [t for t in (self._poller, self._loading)
                  if t is not None and not t.done() and t is not asyncio.current_task()]
        cancel += [task for task, (_, _, batcher) in retiring if batcher is not None]
        for t in cancel:
            t.cancel()
        await asyncio.gather(*cancel, return_exceptions=True)
        everything = [(e.name, e.model, e.batcher) for e in self.entries.values() if e.batcher is not None]
        everything += [item for _, item in retiring if item[2] is not None]
        stopped = await asyncio.gather(*(b.stop(deadline=deadline) for _, _, b in everything))
        abandoned: dict[str, int] = {}
        for (name, model, _), n in zip(everything, stopped, strict=True):
            self._report_abandoned(name, model.version, n, "shutting down")
            if n:
                abandoned[name] = abandoned.get(name, 0) + n
        closing = [task for task, (_, _, batcher) in retiring if batcher is None and not task.done()]
        closed = await asyncio.gather(*(self._close(name, model, deadline) for name, model, _ in everything))
        if closing:
            await asyncio.wait(closing, timeout=max(0.0, deadline - time.monotonic()))
            for task in closing:
                task.cancel()       # stop waiting; a close still running goes on in its daemon thread
        unclosed = [name for (name, _, _), ok in zip(everything, closed, strict=True) if not ok]
        unclosed += [item[0] for task, item in retiring if item[2] is None and not task.done()]
        self.shutdown_report = {"timeout_s": timeout_s, "abandoned": abandoned, "unclosed": unclosed}
        logger.info("shutdown %s: %s", "complete" if not abandoned and not unclosed else "at the deadline",
                    self.shutdown_report)
        return self.shutdown_report

    async def infer(self, entry: ModelEntry, arrays: dict[str, np.ndarray], deadline: float | None,
                    version: str | None = None, hold=None) -> tuple[dict[str, np.ndarray], str]:
        """Run ``arrays`` on the entry's current version; return the outputs and the version that computed them.

        ``version`` (a request pinned to a version) runs on that version or fails with 404 naming the loaded
        version (:meth:`version_not_loaded`): never on another one. An unpinned request whose version was
        retired before its batch ran (a hot reload whose old queue could not drain in time) moves to the
        new version instead of failing. ``hold``: see :class:`service.batcher.InputHold`.
        """
        for _ in range(3):
            # Read together, with no await in between: the swap replaces both in one statement, so the
            # version reported is the one whose batcher computes the answer.
            model, batcher = entry.model, entry.batcher
            if version is not None and model.version != str(version):
                raise self.version_not_loaded(entry, version)
            try:
                return await batcher.submit(arrays, deadline, hold=hold), model.version
            except ShuttingDown:
                if not self.accepting or entry.batcher is batcher:
                    raise
                if version is not None:
                    raise self.version_not_loaded(entry, version) from None
        raise ShuttingDown("the model was swapped repeatedly while this request waited; retry")

    def busy(self) -> bool:
        """Requests queued or batches running on any served model."""
        return any(e.batcher is not None and (e.batcher.queued_rows or e.batcher.running_batches)
                   for e in self.entries.values())

    async def drain(self):
        """SIGTERM's graceful drain: readiness 503 at once; new inference still accepted for
        ``drain_grace_s`` (routing updates take time); then refused (503) while queued and running batches
        finish, until ``drain_grace_s + shutdown_timeout_s`` from now, which also becomes the deadline of
        :meth:`stop`."""
        settings = self.settings
        t0 = time.monotonic()
        self.draining = True
        logger.info("SIGTERM: readiness is now 503; accepting requests for %.1f s more", settings.drain_grace_s)
        await asyncio.sleep(settings.drain_grace_s)
        self.accepting = False
        deadline = t0 + settings.drain_grace_s + settings.shutdown_timeout_s
        self.shutdown_deadline = deadline     # stop() ends by this deadline too
        while time.monotonic() < deadline and self.busy():
            await asyncio.sleep(0.05)
        logger.info("drained in %.2f s; shutting down", time.monotonic() - t0)

    def liveness(self) -> str | None:
        """None while the process is live; otherwise why not: a batch has been running longer than
        ``liveness_stuck_batch_s`` (a TensorFlow call that hangs for good; only a restart helps).
        ``/healthz`` and ``/v2/health/live`` both answer from this."""
        limit = self.settings.liveness_stuck_batch_s
        if limit:
            for e in self.entries.values():
                age = e.batcher.oldest_running_s() if e.batcher is not None else 0.0
                if age > limit:
                    return (f"model {e.name!r} has had a batch running for {age:.0f} s "
                            f"(> TPSERVE_LIVENESS_STUCK_BATCH_S={limit:g})")
        return None

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
            self.metrics.rejected.labels("unknown", "not_ready").inc()
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
            self.metrics.rejected.labels(entry.name, "not_ready").inc()
            raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""),
                                field="model")
        if version is not None and str(version) != entry.version:
            raise self.version_not_loaded(entry, version)
        return entry

    def json_budget(self, name: str | None) -> JsonBudget | None:
        """The most JSON containers/values a request to ``name`` that could succeed can hold (rows: the smaller of
        ``max_rows_per_request`` and the model's queue size); ``name=None`` (the model is
        named inside the body): the largest over the loaded models. None = unbounded (a dimension is unknown,
        or nothing is loaded yet): then only the body-size limit applies."""
        # cached until a model version or its queue size changes
        key = (name, *((id(e.model), e.version, e.batching.max_queue_size) for e in self.entries.values()))
        cached = self._budgets.get(key)
        if cached is not None:
            return cached[0]
        if len(self._budgets) > 64:
            self._budgets.clear()
        budget = self._json_budget(name)
        self._budgets[key] = (budget,)
        return budget

    def _json_budget(self, name: str | None) -> JsonBudget | None:
        entries = [self.entries.get(name)] if name is not None else list(self.entries.values())
        # rows: what one request may carry and the model's queue can hold (more is a 413 either way)
        budgets = [json_budget(e.model.inputs, min(self.settings.max_rows_per_request, e.batching.max_queue_size))
                   for e in entries if e is not None and e.model is not None]
        if not budgets or any(b is None for b in budgets):
            return None
        return JsonBudget(max(b.containers for b in budgets), max(b.values for b in budgets))

    @staticmethod
    def version_not_loaded(entry: ModelEntry, version) -> UnknownModel:
        """The 404 for a request pinned to a version that is not (or no longer) the one served."""
        loaded = [entry.version] if entry.version is not None else []
        return UnknownModel(f"model {entry.name!r} version {str(version)[:20]!r} is not loaded; serving version "
                            f"{entry.version} (loaded versions: {loaded})", field="version", expected=loaded,
                            received=str(version)[:20])

    def find(self, name: str) -> ModelEntry:
        """The entry for ``name`` in any state (for status endpoints)."""
        if name not in self.entries:
            raise UnknownModel(f"unknown model {str(name)[:100]!r}; models: {sorted(self.entries)}", field="model",
                               expected=sorted(self.entries), received=str(name)[:100])
        return self.entries[name]


def _close_built_model(future: Future):
    """Done-callback of a load whose awaiting task was cancelled: close the model it built."""
    if not future.cancelled() and future.exception() is None:
        model = future.result()
        model.close()
        logger.info("model %s version %s: loaded after shutdown began; closed, never served", model.name,
                    model.version)

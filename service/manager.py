"""Model lifecycle: load every configured model, keep its loaded versions, their batchers and metrics
(no TensorFlow).

The TensorFlow side is behind the ``repository`` object (see :mod:`service.repository`):
``repository.scan() -> list[ModelConfig | (name, error)]``, ``repository.versions(name) -> [int]``,
``repository.load(config, max_batch_size, version) -> ServedModel`` and, optionally,
``repository.read_config(name) -> ModelConfig | (name, error)`` (else ``scan()`` is read) and
``repository.fingerprint(name, version)``: a value that changes when a version's files change (a
version that failed to load is not retried until it does; without the method, never).

Versions: a model's ``version_policy`` (default: the newest) says which of its version directories
are served; each loaded version has its own replicas, batcher and metrics series. A request names a
version by number or by one of the config's ``version_labels``; an unversioned request goes to the newest
loaded version. A version that the policy selects is loaded in the background and served as soon as it
is ready; versions the policy no longer selects are retired (their queues drained) once every selected
version has loaded, so a version that fails to load never takes the serving ones down with it; when
the served version's directory is removed, the newest remaining one is loaded (roll back).

Model control (``TPSERVE_MODEL_CONTROL``): ``poll`` polls the repository; ``explicit`` loads and unloads
only through :meth:`ModelManager.load` / :meth:`ModelManager.unload` (the repository API); ``none``
serves what it loaded at start. An unload refuses new requests to the model and drains its queues:
every request it had accepted is answered.

Shutdown (:meth:`ModelManager.stop`) has one deadline for everything: loading and polling are
cancelled, every version's batcher drains concurrently, models are closed; work still running at the
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
from .errors import ModelControlDisabled, ModelNotReady, NotAcceptingWork, UnknownModel, clip
from .metrics import Metrics
from .model import ModelConfig, ServedModel
from .settings import BatchingOptions, Settings
from .threads import in_daemon_thread
from .validation import JsonBudget, json_budget

__all__ = ["ModelManager", "ModelEntry", "VersionSlot", "PinnedEntry"]

logger = logging.getLogger("tpserve")


def version_key(version: str):
    """Sort key of a version string: numerically (``"10"`` after ``"9"``)."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


@dataclass
class VersionSlot:
    """One loaded version of a model: its replicas (``model``) and its own batcher (None in a front
    end's mirror, where the engine batches and ``reported_health`` is the engine's word)."""

    model: ServedModel
    batcher: DynamicBatcher | None
    load_seconds: float | None = None
    reported_health: str | None = None

    @property
    def version(self) -> str:
        return self.model.version

    def health(self) -> str | None:
        """None while this version can serve; else why not (see the batcher)."""
        return self.batcher.health() if self.batcher is not None else self.reported_health

    def status(self) -> dict:
        unhealthy = self.health()
        out = {"version": self.version, "state": "UNAVAILABLE" if unhealthy else "READY",
               "load_seconds": self.load_seconds, "devices": list(self.model.devices)}
        memory = getattr(self.model, "memory", None)
        if memory is not None:
            out["memory"] = dict(memory)
        if unhealthy:
            out["error"] = unhealthy
        return out


@dataclass
class ModelEntry:
    name: str
    config: ModelConfig | None
    state: str = "LOADING"            # LOADING -> READY | FAILED; UNLOADED: not loaded (explicit model control)
    error: str | None = None
    slots: dict[str, VersionSlot] = field(default_factory=dict)   # loaded versions, oldest first
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    load_seconds: float | None = None   # the last version load's
    failed_version: str | None = None   # the newest selected version that failed to load (others may serve)
    wanted: list[str] = field(default_factory=list)   # the versions the policy selects, as last polled

    @property
    def newest(self) -> VersionSlot | None:
        """The version unversioned requests go to: the newest loaded one."""
        return next(reversed(self.slots.values())) if self.slots else None

    @property
    def model(self) -> ServedModel | None:
        slot = self.newest
        return slot.model if slot is not None else None

    @property
    def batcher(self) -> DynamicBatcher | None:
        slot = self.newest
        return slot.batcher if slot is not None else None

    @property
    def version(self) -> str | None:
        slot = self.newest
        return slot.version if slot is not None else None

    @property
    def versions(self) -> list[str]:
        """The loaded versions, oldest first."""
        return list(self.slots)

    @property
    def version_labels(self) -> dict[str, int]:
        return dict(self.config.version_labels) if self.config is not None else {}

    def health(self) -> str | None:
        """None while a READY model can serve unversioned requests; else why not (its newest version's batcher)."""
        slot = self.newest
        return slot.health() if self.state == "READY" and slot is not None else None

    def status(self) -> dict:
        unhealthy = self.health()
        out = {"name": self.name, "state": "UNAVAILABLE" if unhealthy else self.state, "version": self.version}
        if self.config is not None:
            out["architecture"] = self.config.architecture
            out["options"] = self.config.options
            out["version_policy"] = self.config.version_policy.to_config()
            out["version_labels"] = self.version_labels
        if self.error or unhealthy:
            out["error"] = "; ".join(x for x in (unhealthy, self.error) if x)
        out["versions"] = [s.status() for s in self.slots.values()]
        if self.model is not None:
            out["inputs"] = [s.signature() for s in self.model.inputs]
            out["outputs"] = [s.signature() for s in self.model.outputs]
            out["labels"] = self.model.labels
            out["devices"] = self.model.devices
            out["batching"] = self.batching.model_dump()
        return out


class PinnedEntry:
    """A model entry seen through one loaded version: what :meth:`ModelManager.get` returns for a
    request that names a version (by number or label). ``model``/``batcher``/``version``/``health()``
    are that version's; everything else is the entry's."""

    def __init__(self, entry: ModelEntry, slot: VersionSlot, requested: str):
        self.entry, self.slot, self.requested = entry, slot, requested

    def __getattr__(self, name):
        return getattr(self.entry, name)

    @property
    def model(self) -> ServedModel:
        return self.slot.model

    @property
    def batcher(self) -> DynamicBatcher | None:
        return self.slot.batcher

    @property
    def version(self) -> str:
        return self.slot.version

    def health(self) -> str | None:
        return self.slot.health()


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
        """Scan the repository and load every model (one version at a time, off the event loop). Run as a
        task: :meth:`stop` cancels it."""
        self._loading = asyncio.current_task()
        try:
            await self._scan_and_load()
        finally:
            self._loading = None

    def _loads_at_start(self, name: str) -> bool:
        s = self.settings
        return s.model_control != "explicit" or "*" in s.startup_models or name in s.startup_models

    async def _scan_and_load(self):
        try:
            items = await asyncio.to_thread(self.repository.scan)
        except Exception as e:  # noqa: BLE001 - keep serving /healthz and say why in /readyz
            items = [("<repository>", f"scanning the model repository failed: {type(e).__name__}: {e}")]
        async with self._reload_lock:
            for item in items:
                if isinstance(item, ModelConfig):
                    self.entries[item.name] = entry = ModelEntry(item.name, item)
                    if not self._loads_at_start(item.name):
                        entry.state = "UNLOADED"
                        entry.error = ("not loaded at start (TPSERVE_MODEL_CONTROL=explicit and it is not in "
                                       "TPSERVE_STARTUP_MODELS); load it through the repository API")
                else:
                    name, error = item
                    self.entries[name] = ModelEntry(name, None, state="FAILED", error=error)
                    self.metrics.model_load_failures.labels(name).inc()
                    self.metrics.set_model_states(name, {"none": "FAILED"})
                    logger.error("model %s: %s", name, error)
            self.scanned = True
            for entry in list(self.entries.values()):
                if entry.state == "LOADING":
                    await self._sync(entry)
        self.start_polling()

    async def _fingerprint(self, name: str, version: str) -> object:
        fingerprint = getattr(self.repository, "fingerprint", None)
        if fingerprint is None:
            return None
        try:
            return await asyncio.to_thread(fingerprint, name, int(version))
        except (OSError, ValueError):
            return None       # the version directory went away: compared as "changed" by _sync

    async def _build(self, config: ModelConfig, max_batch_size: int, version: int | None) -> ServedModel:
        """``repository.load`` on a daemon thread. Cancelled (by stop()), the thread cannot be interrupted:
        the model it returns is closed as soon as it exists, never served."""
        future = in_daemon_thread(self.repository.load, config, max_batch_size, version, name=f"load-{config.name}")
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_built_model)
            raise

    async def _load(self, entry: ModelEntry, version: int) -> bool:
        """Load (or reload) one version; on success add it to the entry's loaded versions (one statement:
        a request reads a consistent set) and retire the copy it replaces, if any.

        A failure is remembered with the version files' fingerprint (see :meth:`_sync`); the versions
        already serving go on serving. After :meth:`stop` nothing is added. Returns True on success."""
        t0 = time.monotonic()
        key = str(version)
        fingerprint = await self._fingerprint(entry.name, key)
        try:
            batching = BatchingOptions(**{**self.settings.batching.model_dump(), **entry.config.batching})
            model = await self._build(entry.config, batching.max_batch_size, version)
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the others
            error = f"{type(e).__name__}: {e}"
            self.metrics.model_load_failures.labels(entry.name).inc()
            self._failed.setdefault(entry.name, {})[key] = (fingerprint, error)
            logger.error("model %s version %s failed to load%s: %s", entry.name, key,
                         f" (still serving {', '.join(entry.slots)})" if entry.slots else "", error)
            return False
        if self._stopped or entry.state == "UNLOADED":
            # stop() or an unload ran while this version was loading: never swap it in
            in_daemon_thread(model.close, name=f"close-{entry.name}")
            return False
        b = batching
        batcher = DynamicBatcher(model.run_batch, replicas=len(model.devices), max_batch_size=b.max_batch_size,
                                 max_queue_delay_s=b.max_queue_delay_ms / 1000.0, max_queue_rows=b.max_queue_size,
                                 inflight_per_replica=b.inflight_per_replica,
                                 observer=self.metrics.observer(entry.name, model.devices, model.version),
                                 name=entry.name, unhealthy_after_failures=self.settings.unhealthy_after_failed_batches,
                                 stuck_batch_s=self.settings.stuck_batch_timeout_s)
        await batcher.start()
        loaded = time.monotonic() - t0
        old = entry.slots.get(model.version)
        # The swap (no await): new unversioned requests see the newest version from here on; requests
        # already holding an older batcher finish on it.
        entry.slots = dict(sorted({**entry.slots, model.version: VersionSlot(model, batcher, loaded)}.items(),
                                  key=lambda kv: version_key(kv[0])))
        entry.batching, entry.load_seconds = batching, loaded
        self._failed.get(entry.name, {}).pop(str(model.version), None)
        self.metrics.model_load_seconds.labels(entry.name).set(loaded)
        logger.info("model %s version %s ready on %s in %.2f s", entry.name, model.version,
                    ", ".join(model.devices), loaded)
        if old is not None:
            self._start_retiring(entry.name, old)
        self._refresh(entry)
        return True

    def _start_retiring(self, name: str, slot: VersionSlot) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._retire(name, slot.model, slot.batcher))
        self._retiring[task] = (name, slot.model, slot.batcher)
        task.add_done_callback(lambda t: self._retiring.pop(t, None))
        return task

    def _refresh(self, entry: ModelEntry):
        """The entry's state, error and state metric from its loaded versions and failed loads."""
        if entry.state == "UNLOADED":
            self.metrics.set_model_states(entry.name, {"none": "UNLOADED"})
            return
        failed = {v: err for v, (_, err) in self._failed.get(entry.name, {}).items()
                  if v in entry.wanted and v not in entry.slots}
        newest_failed = max(failed, key=version_key) if failed else None
        entry.failed_version = newest_failed
        if entry.slots:
            entry.state = "READY"
            serving = ", ".join(entry.slots)
            entry.error = "; ".join(f"version {v} failed to load, still serving {serving}: {err}"
                                    for v, err in sorted(failed.items(), key=lambda kv: version_key(kv[0]))) or None
            self.metrics.set_model_states(entry.name, {v: "READY" for v in entry.slots})
        elif newest_failed is not None:
            entry.state, entry.error = "FAILED", failed[newest_failed]
            self.metrics.set_model_states(entry.name, {"none": "FAILED"})
        elif entry.state != "FAILED":
            entry.state = "LOADING"
            self.metrics.set_model_states(entry.name, {"none": "LOADING"})

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
        """Bring each model (or ``only``) up to date with the repository: re-read its config (version policy
        and version labels take effect at once; any other change reloads its versions), load the versions its
        policy selects that are not loaded, retire the ones it no longer selects (see :meth:`_sync`).
        Unloaded models are left alone. Returns {model: what happened}."""
        results = {}
        async with self._reload_lock:
            for entry in list(self.entries.values()):
                if self._stopped:
                    break
                if entry.config is None or entry.state == "UNLOADED" or (only is not None and entry.name != only):
                    continue
                results[entry.name] = await self._sync(entry, await self._reread_config(entry))
        return results

    async def _read_config(self, name: str):
        """``ModelConfig`` of ``name`` as the repository holds it now, or ``(name, error)``."""
        read = getattr(self.repository, "read_config", None)
        if read is not None:
            return await asyncio.to_thread(read, name)
        for item in await asyncio.to_thread(self.repository.scan):
            if (item.name if isinstance(item, ModelConfig) else item[0]) == name:
                return item
        return name, f"no model directory {name!r} in the model repository"

    async def _reread_config(self, entry: ModelEntry) -> set[str]:
        """Take up the model's config as it is on disk now. Returns the loaded versions to rebuild (every one,
        when something other than the version policy or version labels changed); a config that no longer reads is
        logged and the current one kept."""
        item = await self._read_config(entry.name)
        if not isinstance(item, ModelConfig):
            if entry.slots:
                logger.error("model %s: its config no longer reads (%s); still serving version(s) %s with the "
                             "config it was loaded with", entry.name, item[1], ", ".join(entry.slots))
            return set()
        old, entry.config = entry.config, item
        same = (old.architecture, old.options, old.batching, old.user, old.validate_range) == \
            (item.architecture, item.options, item.batching, item.user, item.validate_range)
        if not same and entry.slots:
            logger.info("model %s: its config changed; reloading version(s) %s", entry.name, ", ".join(entry.slots))
            return set(entry.slots)
        return set()

    async def _sync(self, entry: ModelEntry, rebuild: set[str] = frozenset()) -> str:
        """Serve what the version policy selects among the model's version directories: load each selected
        version that is not loaded (newest first; and those in ``rebuild`` again), then, once every selected
        version is loaded, retire the others (roll back included: the served version's directory was removed).

        A version that failed to load is not retried while its files are unchanged (same
        ``repository.fingerprint``); the answer repeats its error."""
        name = entry.name
        available = [str(v) for v in await asyncio.to_thread(self.repository.versions, name)]
        failed = self._failed.setdefault(name, {})
        for gone in [v for v in failed if v not in available]:
            del failed[gone]                     # its directory was removed: forget it, clear its error
        policy = entry.config.version_policy
        entry.wanted = [str(v) for v in policy.select([int(v) for v in available])]
        if not entry.wanted:
            serving = ", ".join(entry.slots)
            if not available:
                why = "no version directory"
            else:
                why = f"the version policy ({policy.describe()}) selects none of the versions {available}"
            if not entry.slots:
                entry.state, entry.error = "FAILED", why
                self.metrics.set_model_states(name, {"none": "FAILED"})
            return f"serving {serving}; {why}" if serving else why
        results = []
        for v in reversed(entry.wanted):
            if v in entry.slots and v not in rebuild:
                continue
            if v in failed and await self._fingerprint(name, v) == failed[v][0]:
                results.append(f"failed {v}: {failed[v][1]} (not retried: its files have not changed since "
                               "that attempt)")
                continue
            ok = await self._load(entry, int(v))
            if not ok and (self._stopped or entry.state == "UNLOADED"):
                results.append(f"not loaded {v}: " + ("the server is shutting down" if self._stopped
                                                      else "the model was unloaded meanwhile"))
                return "; ".join(results)
            results.append(f"loaded {v}" if ok else f"failed {v}: {failed[v][1]}")
        if all(v in entry.slots for v in entry.wanted):
            for v in [v for v in entry.slots if v not in entry.wanted]:
                if v not in available:
                    logger.warning("model %s: the directory of the served version %s was removed; serving %s",
                                   name, v, ", ".join(entry.wanted))
                else:
                    logger.info("model %s: version %s is no longer selected by its version policy (%s); retiring it",
                                name, v, policy.describe())
                slot = entry.slots[v]
                entry.slots = {k: s for k, s in entry.slots.items() if k != v}
                self._start_retiring(name, slot)
        self._refresh(entry)
        return "; ".join(results) if results else f"serving {', '.join(entry.slots)}"

    # ----------------------------------------------------------------------------- model control
    def _control(self, action: str):
        mode = self.settings.model_control
        if mode == "none" or (action == "unload" and mode == "poll"):
            raise ModelControlDisabled(
                f"{action}ing models through the API is off: TPSERVE_MODEL_CONTROL={mode} "
                f"({'models change only through the repository poll' if mode == 'poll' else 'models stay as loaded at start'}); "
                "set TPSERVE_MODEL_CONTROL=explicit to load and unload through the API",
                field="model_control", expected="explicit" if action == "unload" else ["poll", "explicit"],
                received=mode)

    async def load(self, name: str) -> str:
        """The repository API's load: read the model's config from the repository (a model directory added
        since the start is picked up) and serve the versions its policy selects now; an unloaded model is
        loaded again. Refused (409) with ``TPSERVE_MODEL_CONTROL=none``. Returns what happened (as
        :meth:`poll_once`)."""
        self._control("load")
        if self._stopped or not self.accepting:
            raise NotAcceptingWork("the server is shutting down; it loads no models")
        async with self._reload_lock:
            entry = self.entries.get(name)
            if entry is None or entry.config is None:
                item = await self._read_config(name)
                if not isinstance(item, ModelConfig):
                    if entry is None:
                        raise UnknownModel(f"no model {clip(name, 100)!r} to load: {item[1]}", field="model",
                                           received=clip(name, 100))
                    entry.error = item[1]
                    return f"failed: {item[1]}"
                entry = self.entries[name] = ModelEntry(name, item)
                rebuild = set()
            else:
                rebuild = await self._reread_config(entry)
            if entry.state == "UNLOADED":
                entry.state, entry.error = "LOADING", None
                self._refresh(entry)
            logger.info("model %s: load requested through the repository API", name)
            return await self._sync(entry, rebuild)

    async def unload(self, name: str) -> str:
        """The repository API's unload (``TPSERVE_MODEL_CONTROL=explicit`` only, else 409): new requests to
        the model are refused at once (404), every request already accepted is answered (its version's queue
        drains, up to ``shutdown_timeout_s``), then its versions are closed. Returns what happened."""
        self._control("unload")
        entry = self.find(name)
        async with self._reload_lock:
            if entry.state == "UNLOADED":
                return "not loaded"
            slots = list(entry.slots.values())
            entry.slots, entry.state, entry.wanted = {}, "UNLOADED", []
            entry.error = "unloaded through the repository API"
            self._refresh(entry)
            logger.info("model %s: unloading version(s) %s; draining their queues", name,
                        ", ".join(s.version for s in slots))
            tasks = [self._start_retiring(name, slot) for slot in slots]
            if tasks:
                await asyncio.wait(tasks)
        return f"unloaded {', '.join(s.version for s in slots)}" if slots else "unloaded"

    async def _poll_forever(self):
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - polling must survive a bad repository state
                logger.exception("repository poll failed")

    def start_polling(self):
        if self.settings.model_control != "poll":
            return
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
        everything = [(e.name, slot.model, slot.batcher) for e in self.entries.values() for slot in e.slots.values()
                      if slot.batcher is not None]
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

    async def infer(self, entry: ModelEntry | PinnedEntry, arrays: dict[str, np.ndarray], deadline: float | None,
                    version: str | None = None, hold=None) -> tuple[dict[str, np.ndarray], str]:
        """Run ``arrays`` on a version of the entry; return the outputs and the version that computed them.

        A pinned request (``entry`` from :meth:`get` with a version, or ``version`` given: a number or a
        label) runs on that version or fails with 404 naming the loaded versions
        (:meth:`version_not_loaded`): never on another one. An unpinned request runs on the newest loaded
        version; if that version was retired before its batch ran (a hot reload whose old queue could not
        drain in time), it moves to the newest one instead of failing. ``hold``: see
        :class:`service.batcher.InputHold`.
        """
        if version is not None and not isinstance(entry, PinnedEntry):
            entry = self.get(entry.name, version)
        pinned = entry.version if isinstance(entry, PinnedEntry) else None
        base = entry.entry if isinstance(entry, PinnedEntry) else entry
        slot = entry.slot if isinstance(entry, PinnedEntry) else base.newest
        for _ in range(3):
            if slot is None:
                if pinned is not None:
                    raise self.version_not_loaded(base, entry.requested)
                raise ModelNotReady(f"model {base.name!r} has no loaded version" +
                                    (f" ({base.error})" if base.error else ""), field="model")
            try:
                return await slot.batcher.submit(arrays, deadline, hold=hold), slot.version
            except ShuttingDown:
                current = base.slots.get(pinned) if pinned is not None else base.newest
                if not self.accepting or current is slot:
                    raise
                slot = current
        raise ShuttingDown("the model was swapped repeatedly while this request waited; retry")

    def busy(self) -> bool:
        """Requests queued or batches running on any served model version."""
        return any(s.batcher is not None and (s.batcher.queued_rows or s.batcher.running_batches)
                   for e in self.entries.values() for s in e.slots.values())

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
                for slot in e.slots.values():
                    age = slot.batcher.oldest_running_s() if slot.batcher is not None else 0.0
                    if age > limit:
                        return (f"model {e.name!r} version {slot.version} has had a batch running for {age:.0f} s "
                                f"(> TPSERVE_LIVENESS_STUCK_BATCH_S={limit:g})")
        return None

    def readiness(self) -> tuple[bool, list[str]]:
        if self.draining:
            return False, ["the server is shutting down (draining)"]
        if not self.scanned:
            return False, ["the model repository is being scanned"]
        if not self.entries:
            return False, ["no models configured"]
        # a model unloaded through the API (or not loaded at start in explicit mode) is not expected to serve
        reasons = [f"model {e.name!r} is {e.state}" + (f": {e.error}" if e.error else "")
                   for e in self.entries.values() if e.state not in ("READY", "UNLOADED")]
        for e in self.entries.values():
            newest = e.newest
            for slot in e.slots.values():
                why = slot.health()
                if why is not None:
                    which = "" if slot is newest else f" version {slot.version}"
                    reasons.append(f"model {e.name!r}{which} is UNAVAILABLE: {why}")
        return not reasons, reasons

    def get(self, name: str | None, version: str | None = None) -> ModelEntry | PinnedEntry:
        """The entry for ``name`` (or the only model when ``name`` is None); it must be READY. With a
        ``version`` (a number or one of the model's version labels) that version must be loaded: the answer is a
        :class:`PinnedEntry` on it."""
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
        if entry.state == "UNLOADED":
            raise UnknownModel(f"model {entry.name!r} is not loaded ({entry.error}); load it with POST "
                               f"/v2/repository/models/{entry.name}/load", field="model", received=entry.name)
        if entry.state != "READY":
            self.metrics.rejected.labels(entry.name, "not_ready").inc()
            raise ModelNotReady(f"model {entry.name!r} is {entry.state}" + (f": {entry.error}" if entry.error else ""),
                                field="model")
        if version is None:
            return entry
        key = self.resolve_version(entry, version)
        slot = entry.slots.get(key)
        if slot is None:
            raise self.version_not_loaded(entry, version)
        return PinnedEntry(entry, slot, str(version))

    @staticmethod
    def resolve_version(entry: ModelEntry, version) -> str:
        """A version number (``"3"``, ``3``, ``"03"``) or one of the model's labels -> the version number as a
        string; an unknown label is a 404 naming the labels there are."""
        text = str(version)
        if text.isdigit():
            return str(int(text))
        labels = entry.version_labels
        if text in labels:
            return str(labels[text])
        known = labels or "none (its config sets no 'version_labels')"
        raise UnknownModel(f"model {entry.name!r} has no version label {clip(text, 40)!r}; its labels: {known}; "
                           "or name a version number",
                           field="version", expected=sorted(labels), received=clip(text, 40))

    def json_budget(self, name: str | None) -> JsonBudget | None:
        """The most JSON containers/values a request to ``name`` that could succeed can hold (rows: the smaller of
        ``max_rows_per_request`` and the model's queue size); ``name=None`` (the model is
        named inside the body): the largest over the loaded models. None = unbounded (a dimension is unknown,
        or nothing is loaded yet): then only the body-size limit applies."""
        # cached until a model version or its queue size changes
        key = (name, *((tuple(id(s.model) for s in e.slots.values()), e.batching.max_queue_size)
                       for e in self.entries.values()))
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
        budgets = [json_budget(s.model.inputs, min(self.settings.max_rows_per_request, e.batching.max_queue_size))
                   for e in entries if e is not None for s in e.slots.values()]
        if not budgets or any(b is None for b in budgets):
            return None
        return JsonBudget(max(b.containers for b in budgets), max(b.values for b in budgets))

    @staticmethod
    def version_not_loaded(entry: ModelEntry, version) -> UnknownModel:
        """The 404 for a request pinned to a version (or label) that is not (or no longer) loaded."""
        loaded = entry.versions
        text = str(version)[:40]
        labels = entry.version_labels
        what = f"version label {text!r} (version {labels[text]})" if text in labels else f"version {text!r}"
        return UnknownModel(f"model {entry.name!r} {what} is not loaded; serving version {entry.version} "
                            f"(loaded versions: {loaded})", field="version", expected=loaded, received=text)

    def find(self, name: str, version: str | None = None) -> ModelEntry | PinnedEntry:
        """The entry for ``name`` in any state (for status endpoints). With a ``version`` (number or label):
        a :class:`PinnedEntry` on it when it is loaded, 404 when another one is; the entry itself while
        none is loaded (its state says why)."""
        if name not in self.entries:
            raise UnknownModel(f"unknown model {str(name)[:100]!r}; models: {sorted(self.entries)}", field="model",
                               expected=sorted(self.entries), received=str(name)[:100])
        entry = self.entries[name]
        if version is None or not entry.slots:
            return entry
        slot = entry.slots.get(self.resolve_version(entry, version))
        if slot is None:
            raise self.version_not_loaded(entry, version)
        return PinnedEntry(entry, slot, str(version))


def _close_built_model(future: Future):
    """Done-callback of a load whose awaiting task was cancelled: close the model it built."""
    if not future.cancelled() and future.exception() is None:
        model = future.result()
        model.close()
        logger.info("model %s version %s: loaded after shutdown began; closed, never served", model.name,
                    model.version)

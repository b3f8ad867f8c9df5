"""The engine process of the multi-process server: TensorFlow, the replicas, one batcher per model version.

It owns the real :class:`~service.manager.ModelManager` (loading, hot reload, batching, drain) and
serves the front ends over a Unix socket (:mod:`service.ipc` frames, tensors in each front end's
shared-memory arena, :mod:`service.shm`). Every front end's requests for a model version go to that
version's one batcher, so batches span all clients. Nothing here parses HTTP, JSON bodies or images: the
front ends do that.

The supervisor (:mod:`service.supervisor`) drives it through a pipe: ``"drain"`` (SIGTERM: the
manager's graceful drain, answered ``"drained"``), ``"stop"`` (stop the manager within the drain's
deadline, then exit 0). The pipe closing (the supervisor died) stops it too.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import orjson

from .errors import InvalidRequest
from .images import run_image_work
from .ipc import FramedProtocol, encode_error
from .manager import ModelEntry, ModelManager
from .process import settle_heap
from .shm import Segment, nbytes, views, write_arrays

__all__ = ["engine_main", "snapshot"]

logger = logging.getLogger("tpserve.engine")

SNAPSHOT_INTERVAL_S = 0.1     # state is checked this often and sent when it changed ...
HEARTBEAT_S = 0.5             # ... and at least this often (the front ends' sign of life)
_CALLS = {"poll_once", "load", "unload"}        # manager methods a front end may call


def _model_wire(m) -> dict:
    return {"name": m.name, "version": m.version, "architecture": m.architecture, "labels": m.labels,
            "devices": list(m.devices), "inputs": [s.to_wire() for s in m.inputs],
            "outputs": [s.to_wire() for s in m.outputs],
            "takes_images": getattr(m, "preprocess_image", None) is not None}


def _entry_wire(e: ModelEntry) -> dict:
    return {
        "name": e.name, "state": e.state, "error": e.error, "failed_version": e.failed_version,
        "load_seconds": e.load_seconds, "health": e.health(), "status": e.status(),
        "batching": e.batching.model_dump(),
        "config": None if e.config is None else {
            "architecture": e.config.architecture, "options": e.config.options, "batching": e.config.batching,
            "validate_range": e.config.validate_range, "version_policy": e.config.version_policy.to_config(),
            "version_labels": e.config.version_labels},
        "slots": [{"model": _model_wire(slot.model), "load_seconds": slot.load_seconds, "health": slot.health()}
                  for slot in e.slots.values()],
    }


def snapshot(manager: ModelManager) -> dict:
    """What a front end mirrors (see :class:`service.remote.RemoteManager`)."""
    return {"t": "s", "scanned": manager.scanned, "draining": manager.draining, "accepting": manager.accepting,
            "liveness": manager.liveness(), "entries": [_entry_wire(e) for e in manager.entries.values()]}


def _preprocess(model, arrays: dict[str, np.ndarray], images: dict[str, int]) -> dict[str, np.ndarray]:
    """``"<input>/<i>"`` decoded images -> ``<input>``: the model's preprocessed rows, stacked."""
    pre = getattr(model, "preprocess_image", None)
    if pre is None:
        raise InvalidRequest(f"model {model.name!r} does not take images", field="image")
    out = {k: v for k, v in arrays.items() if "/" not in k}
    for name, n in images.items():
        out[name] = np.stack([pre(arrays[f"{name}/{i}"]) for i in range(n)])
    return out


class _Hold:
    """Counts the batcher's chunks that may still read one request's inputs (:class:`service.batcher.InputHold`)."""

    def __init__(self):
        self.n = 0
        self._zero: asyncio.Event | None = None

    def acquire(self):
        self.n += 1

    def release(self):
        self.n -= 1
        if self.n == 0 and self._zero is not None:
            self._zero.set()

    async def wait(self, timeout_s: float):
        if self.n:
            self._zero = asyncio.Event()
            try:
                await asyncio.wait_for(self._zero.wait(), timeout_s)
            except TimeoutError:
                logger.error("a cancelled request's batch still held its inputs after %g s", timeout_s)


class _Connection(FramedProtocol):
    """One front end."""

    def __init__(self, engine: Engine):
        super().__init__(self._on_message, self._on_lost)
        self.engine = engine
        self.arena: Segment | None = None
        self.tasks: dict[int, asyncio.Task] = {}

    def _on_message(self, msg: dict):
        t = msg["t"]
        if t == "i":
            task = asyncio.get_running_loop().create_task(self.engine.infer(self, msg))
            self.tasks[msg["id"]] = task
            task.add_done_callback(lambda t, i=msg["id"]: self._done(i, t))
        elif t == "x":
            task = self.tasks.get(msg["id"])
            if task is not None:
                task.cancel()
        elif t == "c":
            asyncio.get_running_loop().create_task(self.engine.call(self, msg))
        elif t == "hello":
            self.arena = Segment.attach(msg["arena"])
            self.engine.connections.add(self)
            self.send(self.engine.last_snapshot or snapshot(self.engine.manager))
        else:
            logger.error("unknown frame type %r from a front end", t)

    def _done(self, rid: int, task: asyncio.Task):
        self.tasks.pop(rid, None)
        if task.cancelled():
            # cancelled before its first step (its "x" came in the same read as its "i"): Engine.infer never
            # ran, so nobody answered; the front end frees the request's shared memory on this answer only
            self.send({"t": "r", "id": rid, "err": encode_error(asyncio.CancelledError())})

    def _on_lost(self, exc):
        self.engine.connections.discard(self)
        for task in list(self.tasks.values()):
            task.cancel()    # nobody is left to answer; the batcher drops what has not run


class Engine:
    def __init__(self, settings, manager: ModelManager, control=None):
        self.settings = settings
        self.manager = manager
        self.control = control
        self.connections: set[_Connection] = set()
        self.last_snapshot: dict | None = None
        self._last_bytes = b""
        self._last_sent = 0.0
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ requests from front ends
    async def infer(self, conn: _Connection, msg: dict):
        rid = msg["id"]
        seg = None
        hold = _Hold()
        try:
            if msg.get("seg"):
                seg = Segment.attach(msg["seg"])
            src = seg.buf if seg is not None else conn.arena.buf
            arrays = views(src, msg["in"])
            version = msg.get("v")
            entry = self.manager.get(msg["m"], version)
            if msg.get("img"):      # decoded uploads: the model's own preprocessing, off the event loop
                arrays = await run_image_work(_preprocess, entry.model, arrays, msg["img"])
            try:
                outputs, served = await self.manager.infer(entry, arrays, msg.get("d"), version, hold)
            except asyncio.CancelledError:
                # cancelled (the client went away) while its batch may be running: the front end frees
                # the inputs' memory when it has the answer, so answer only when no batch reads them
                await hold.wait(self.settings.shutdown_timeout_s)
                raise
            del arrays
            reply = {"t": "r", "id": rid, "v": served}
            need = nbytes(outputs.values())
            if msg.get("ro") is not None and need <= msg["rn"]:
                reply["out"] = write_arrays(conn.arena.buf, msg["ro"], outputs)
            else:   # the front end could not size the outputs (or they grew): a one-off segment it unlinks
                out = Segment.create("tpserve-out", need)
                reply["out"] = write_arrays(out.buf, 0, outputs)
                reply["seg"] = out.name
                out.close()
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - every request gets an answer
            reply = {"t": "r", "id": rid, "err": encode_error(e)}
        finally:
            if seg is not None:
                seg.close()
        conn.send(reply)

    async def call(self, conn: _Connection, msg: dict):
        try:
            if msg["fn"] not in _CALLS:
                raise ValueError(f"a front end may not call {msg['fn']!r}")
            value = await getattr(self.manager, msg["fn"])(**msg.get("kw", {}))
            reply = {"t": "r", "id": msg["id"], "val": value}
            # what the call changed reaches every front end before this answer does (same ordered socket):
            # a client that loads a model and sends a request at once finds it served
            self.publish(force=True)
        except Exception as e:  # noqa: BLE001
            reply = {"t": "r", "id": msg["id"], "err": encode_error(e)}
        conn.send(reply)

    # ------------------------------------------------------------------ state to the front ends
    def publish(self, force: bool = False):
        snap = snapshot(self.manager)
        data = orjson.dumps(snap)
        now = time.monotonic()
        if force or data != self._last_bytes or now - self._last_sent >= HEARTBEAT_S:
            self.last_snapshot, self._last_bytes, self._last_sent = snap, data, now
            for conn in list(self.connections):
                conn.send(snap)

    async def _publisher(self):
        while True:
            try:
                self.publish()
            except Exception:  # noqa: BLE001 - a snapshot bug must not stop the heartbeat for good
                logger.exception("engine state snapshot failed")
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)

    # ------------------------------------------------------------------ supervisor
    def _on_control(self):
        try:
            cmd = self.control.recv()
        except (EOFError, OSError):
            cmd = "stop"                       # the supervisor is gone: stop, do not linger as an orphan
            asyncio.get_running_loop().remove_reader(self.control.fileno())
        if cmd == "drain":
            self._tasks.append(asyncio.get_running_loop().create_task(self._drain()))
        elif cmd == "stop":
            self._stop.set()

    async def _drain(self):
        draining = asyncio.get_running_loop().create_task(self.manager.drain())
        await asyncio.sleep(0)             # the drain has set ``draining``: tell the front ends now
        self.publish(force=True)
        await draining
        self.publish(force=True)
        self.control.send("drained")

    def stop_soon(self):
        """Ask :meth:`run` to stop (from any thread)."""
        self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self, socket_path: str):
        loop = self._loop = asyncio.get_running_loop()
        loading = loop.create_task(self.manager.start())
        loading.add_done_callback(lambda _: settle_heap())     # the models are long-lived: out of GC's sight
        server = await loop.create_unix_server(lambda: _Connection(self), path=socket_path)
        publisher = loop.create_task(self._publisher())
        if self.control is not None:
            loop.add_reader(self.control.fileno(), self._on_control)
            self.control.send("up")
        try:
            await self._stop.wait()
        finally:
            report = await self.manager.stop()
            loading.cancel()
            publisher.cancel()
            self.publish(force=True)
            server.close()
            for task in self._tasks:
                task.cancel()
            if self.control is not None:
                loop.remove_reader(self.control.fileno())
        return report


def engine_main(settings, socket_path: str, control, log_level: str):
    """Entry point of the engine process (spawned by the supervisor)."""
    from .process import configure_process

    configure_process("engine", log_level)
    from .metrics import Metrics
    from .repository import ModelRepository  # TensorFlow is imported here, in this process only

    metrics = Metrics.multiprocess()
    manager = ModelManager(settings, metrics, ModelRepository(settings))
    asyncio.run(Engine(settings, manager, control).run(socket_path))

"""The front end's side of the engine: a mirror of its :class:`ModelManager` with the same interface.

A front-end process serves HTTP with the same app as the embedded server (:func:`service.app.create_app`),
handing it a :class:`RemoteManager` instead of a real manager: ``get``/``find``/``readiness``/
``json_budget``/... answer from the engine's last state snapshot (pushed on every change and every
0.5 s, :mod:`service.engine`), and ``infer`` writes the input arrays into this process's
shared-memory arena and waits for the engine's answer (:class:`EngineClient`).

If the engine stops reporting, readiness fails after :data:`STALE_READY_S` and liveness after
:data:`STALE_LIVE_S`; if its connection closes, every waiting request is answered 503 and the
front end stops (the supervisor has noticed too, see :mod:`service.supervisor`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .batcher import ModelUnavailable, ShuttingDown
from .images import RawImage, RawImageBatch, defer_preprocessing
from .ipc import FramedProtocol, decode_error
from .manager import ModelEntry, ModelManager, PinnedEntry, VersionSlot
from .model import ModelConfig, TensorSpec, VersionPolicy
from .settings import BatchingOptions
from .shm import Arena, Segment, aligned, nbytes, views, write_arrays

__all__ = ["RemoteManager", "EngineClient", "ModelInfo", "STALE_READY_S", "STALE_LIVE_S"]

logger = logging.getLogger("tpserve.frontend")

STALE_READY_S = 2.0
STALE_LIVE_S = 10.0


@dataclass
class ModelInfo:
    """What a front end knows of a served model version: its signature (no ``run_batch``: the engine runs it)."""

    name: str
    version: str
    architecture: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] | None
    devices: list[str]
    takes_images: bool = False
    wire: dict | None = field(default=None, repr=False, compare=False)   # the snapshot it was made from

    def __post_init__(self):
        # what service.images.image_row calls: here it only marks the decoded image for the engine
        self.preprocess_image = defer_preprocessing if self.takes_images else None
        sizes = [s.static_nbytes(1) for s in self.outputs]
        self._out_row_bytes = None if None in sizes else sizes

    @classmethod
    def from_wire(cls, d: dict) -> ModelInfo:
        return cls(d["name"], d["version"], d["architecture"], [TensorSpec.from_wire(s) for s in d["inputs"]],
                   [TensorSpec.from_wire(s) for s in d["outputs"]], d["labels"], d["devices"], d["takes_images"], d)

    def output_nbytes(self, rows: int) -> int | None:
        """Room for ``rows`` rows of every output, or None when an output's shape is not fixed."""
        if self._out_row_bytes is None:
            return None
        return sum(aligned(rows * n) for n in self._out_row_bytes)


class RemoteEntry(ModelEntry):
    """A :class:`ModelEntry` as the engine reported it (health and status included)."""

    _health: str | None = None
    _status: dict | None = None

    def health(self) -> str | None:
        return self._health

    def status(self) -> dict:
        return self._status or {"name": self.name, "state": self.state, "version": self.version}


def _split_images(arrays: dict) -> tuple[dict[str, np.ndarray], dict[str, int] | None]:
    """Decoded uploads travel one array per image (``"<input>/<i>"``; the engine preprocesses and stacks
    them): returns the arrays to send and {input: images} (None when there are none)."""
    images = {}
    out = {}
    for name, a in arrays.items():
        if isinstance(a, RawImage):            # one upload: shape (1, H, W, 3)
            a = RawImageBatch([a[0]])
        if isinstance(a, RawImageBatch):
            images[name] = len(a)
            out.update({f"{name}/{i}": np.asarray(img) for i, img in enumerate(a)})
        else:
            out[name] = a
    return out, images or None


class EngineClient:
    """This process's connection to the engine and its shared-memory arena."""

    def __init__(self, socket_path: str, arena_bytes: int, on_state: Callable[[dict], None],
                 on_lost: Callable[[], None]):
        self.socket_path = socket_path
        self.arena = Arena(Segment.create("tpserve-arena", arena_bytes))
        self._on_state = on_state
        self._on_lost_cb = on_lost
        self._proto: FramedProtocol | None = None
        self._pending: dict[int, tuple[asyncio.Future, int | None, Segment | None, ModelInfo | None]] = {}
        self._next_id = 0
        self.connected = False
        self.loop: asyncio.AbstractEventLoop | None = None      # the loop that owns the connection

    async def connect(self):
        loop = self.loop = asyncio.get_running_loop()
        _, self._proto = await loop.create_unix_connection(
            lambda: FramedProtocol(self._on_message, self._on_lost), self.socket_path)
        self.connected = True
        self._proto.send({"t": "hello", "arena": self.arena.segment.name})

    def close(self):
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self.arena.segment.unlink()

    # ------------------------------------------------------------------ requests
    def _new(self, region: int | None, seg: Segment | None, info: ModelInfo | None) -> tuple[int, asyncio.Future]:
        if not self.connected:
            raise ShuttingDown("the engine process is gone; the server is restarting")
        self._next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = (fut, region, seg, info)
        return self._next_id, fut

    async def infer(self, name: str, info: ModelInfo, arrays: dict[str, np.ndarray], deadline: float | None,
                    version: str | None) -> tuple[dict[str, np.ndarray], str]:
        rows = len(next(iter(arrays.values())))
        arrays, images = _split_images(arrays)
        in_bytes = nbytes(arrays.values())
        out_bytes = info.output_nbytes(rows) or 0
        region = self.arena.alloc(in_bytes + out_bytes)
        seg = None
        if region is None:      # no room in the arena: a one-off segment for the inputs (the engine sizes outputs)
            seg = Segment.create("tpserve-in", in_bytes)
            described = write_arrays(seg.buf, 0, arrays)
            out_region = None
        else:
            described = write_arrays(self.arena.segment.buf, region, arrays)
            out_region = region + in_bytes if out_bytes else None
        try:
            rid, fut = self._new(region, seg, info)
        except BaseException:
            self._release(region, seg)
            raise
        self._proto.send({"t": "i", "id": rid, "m": name, "v": version, "d": deadline, "in": described,
                          "seg": seg.name if seg is not None else None, "ro": out_region, "rn": out_bytes,
                          "img": images})
        try:
            return await fut
        except asyncio.CancelledError:
            # the client went away: the engine drops it if it has not run; the memory is freed on its answer
            self._proto.send({"t": "x", "id": rid})
            raise

    async def call(self, fn: str, **kw):
        rid, fut = self._new(None, None, None)
        self._proto.send({"t": "c", "id": rid, "fn": fn, "kw": kw})
        return await fut

    # ------------------------------------------------------------------ answers
    def _release(self, region: int | None, seg: Segment | None):
        if region is not None:
            self.arena.free(region)
        if seg is not None:
            seg.close()
            seg.unlink()

    def _on_message(self, msg: dict):
        if msg["t"] == "s":
            self._on_state(msg)
            return
        fut, region, seg, info = self._pending.pop(msg["id"])
        try:
            if fut.done():          # cancelled: only the memory is left to free
                return
            if "err" in msg:
                fut.set_exception(decode_error(msg["err"]))
            elif "val" in msg:
                fut.set_result(msg["val"])
            else:
                fut.set_result((self._outputs(msg), msg["v"]))
        finally:
            self._release(region, seg)

    def _outputs(self, msg: dict) -> dict[str, np.ndarray]:
        if msg.get("seg"):
            out = Segment.attach(msg["seg"])
            try:
                result = {k: v.copy() for k, v in views(out.buf, msg["out"]).items()}
            finally:
                out.close()
                out.unlink()
            return result
        return {k: v.copy() for k, v in views(self.arena.segment.buf, msg["out"]).items()}

    def _on_lost(self, exc):
        self.connected = False
        for fut, region, seg, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ModelUnavailable("the engine process stopped before answering; retry"))
            self._release(region, seg)
        self._pending.clear()
        self._on_lost_cb()


class RemoteManager(ModelManager):
    """The engine's :class:`ModelManager`, mirrored in a front-end process (same interface)."""

    def __init__(self, settings, metrics, socket_path: str, arena_bytes: int, on_engine_lost: Callable[[], None]):
        super().__init__(settings, metrics, repository=None)
        self.client = EngineClient(socket_path, arena_bytes, self._apply, self._lost)
        self._on_engine_lost = on_engine_lost
        self._last_state = 0.0
        self._liveness: str | None = None
        self._first_state = asyncio.Event()

    async def start(self):
        await self.client.connect()
        await self._first_state.wait()

    async def stop(self, timeout_s: float | None = None) -> dict:
        self._stopped = True
        self.client.close()
        self.shutdown_report = {"timeout_s": timeout_s, "abandoned": {}, "unclosed": []}
        return self.shutdown_report

    def _lost(self):
        self._liveness = "the engine process is gone"
        self.accepting = False
        if not self._stopped:
            logger.error("the engine process closed its connection; this front end stops")
            self._on_engine_lost()

    def _apply(self, snap: dict):
        self._last_state = time.monotonic()
        self.scanned, self.draining, self.accepting = snap["scanned"], snap["draining"], snap["accepting"]
        self._liveness = snap["liveness"]
        seen = set()
        for d in snap["entries"]:
            seen.add(d["name"])
            entry = self.entries.get(d["name"])
            if entry is None:
                entry = self.entries[d["name"]] = RemoteEntry(d["name"], None)
            cfg = d["config"]
            entry.config = None if cfg is None else ModelConfig(
                d["name"], cfg["architecture"], cfg["options"], cfg["batching"], validate_range=cfg["validate_range"],
                version_policy=VersionPolicy.parse(cfg["version_policy"]), version_labels=cfg["version_labels"])
            slots = {}
            for w in d["slots"]:
                m = w["model"]
                known = entry.slots.get(m["version"])
                # the same version as before keeps its ModelInfo; a new (or rebuilt) version gets one
                info = known.model if known is not None and known.model.wire == m else ModelInfo.from_wire(m)
                slots[m["version"]] = VersionSlot(info, None, w["load_seconds"], w["health"])
            entry.slots = slots
            entry.state, entry.error, entry.failed_version = d["state"], d["error"], d["failed_version"]
            entry.load_seconds = d["load_seconds"]
            entry.batching = BatchingOptions(**d["batching"])
            entry._health, entry._status = d["health"], d["status"]
        for gone in set(self.entries) - seen:
            del self.entries[gone]
        self._first_state.set()

    def _silent_s(self) -> float:
        return time.monotonic() - self._last_state

    def liveness(self) -> str | None:
        if self._liveness is not None:
            return self._liveness
        silent = self._silent_s()
        if self._first_state.is_set() and silent > STALE_LIVE_S:
            return f"the engine process has not reported for {silent:.0f} s"
        return None

    def readiness(self) -> tuple[bool, list[str]]:
        if not self._first_state.is_set():
            return False, ["waiting for the engine process"]
        if not self.client.connected:
            return False, ["the engine process is gone"]
        silent = self._silent_s()
        if silent > STALE_READY_S:
            return False, [f"the engine process has not reported for {silent:.1f} s"]
        return super().readiness()

    async def infer(self, entry, arrays, deadline, version=None, hold=None):
        # the engine resolves the version or label and checks it against what it serves (not this snapshot)
        if version is None and isinstance(entry, PinnedEntry):
            version = entry.requested
        return await self.client.infer(entry.name, entry.model, arrays, deadline, version)

    async def poll_once(self, only: str | None = None) -> dict[str, str]:
        return await self.client.call("poll_once", only=only)

    async def load(self, name: str) -> str:
        return await self.client.call("load", name=name)

    async def unload(self, name: str) -> str:
        return await self.client.call("unload", name=name)

"""Control messages between the engine process and the front ends: small, framed, orjson.

A frame is a 4-byte little-endian length and an orjson document (a dict with a type ``"t"``).
Tensors never travel in frames: they are in shared memory (:mod:`service.shm`), and a frame
carries their dtype, shape and offset. Errors cross as ``{"k": class name, "msg": ..., ...}``
(:func:`encode_error` / :func:`decode_error`) and are raised again as the same class, so a 429's
Retry-After or a 404's field survive the hop.

Frames (``id`` pairs a request with its answer):

* front end -> engine: ``i`` infer (model, version pin, deadline, input descriptions, output region),
  ``x`` cancel an infer (the client went away), ``c`` call a manager method (``poll_once``);
* engine -> front end: ``r`` the answer to ``i``/``c`` (outputs, served version, or ``err``),
  ``s`` a state snapshot (models, signatures, readiness, liveness), sent on every change and as a
  heartbeat.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from . import batcher as _batcher
from . import errors as _errors

__all__ = ["FramedProtocol", "encode_error", "decode_error"]

_HEADER = 4
_MAX_FRAME = 64 * 1024 * 1024


class FramedProtocol(asyncio.Protocol):
    """An asyncio protocol that parses frames and hands each decoded message to ``on_message``."""

    def __init__(self, on_message: Callable[[dict], None], on_lost: Callable[[Exception | None], None]):
        self._on_message = on_message
        self._on_lost = on_lost
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        buf = self._buf
        buf += data
        start = 0
        end = len(buf)
        while end - start >= _HEADER:
            n = int.from_bytes(buf[start:start + _HEADER], "little")
            if n > _MAX_FRAME:
                self.transport.abort()
                return
            if end - start - _HEADER < n:
                break
            msg = orjson.loads(memoryview(buf)[start + _HEADER:start + _HEADER + n])
            start += _HEADER + n
            self._on_message(msg)
        del buf[:start]

    def send(self, msg: dict):
        if self.transport is None or self.transport.is_closing():
            return
        payload = orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY)
        self.transport.write(len(payload).to_bytes(_HEADER, "little") + payload)

    def connection_lost(self, exc):
        self._on_lost(exc)


# The classes an answer may carry, by name: the service's HTTP errors and the batcher's.
_ERROR_CLASSES = {name: getattr(_errors, name) for name in _errors.__all__ if isinstance(getattr(_errors, name), type)}
_ERROR_CLASSES.update({name: getattr(_batcher, name) for name in _batcher.__all__
                       if isinstance(getattr(_batcher, name), type) and issubclass(getattr(_batcher, name), Exception)})
_SERVICE_FIELDS = ("field", "expected", "received", "headers", "status")
_BATCHER_FIELDS = ("retry_after_s", "rows", "limit")


def encode_error(exc: BaseException) -> dict:
    kind = type(exc).__name__
    if isinstance(exc, _errors.ServiceError):
        out = {"k": kind if kind in _ERROR_CLASSES else "ServiceError", "msg": exc.message}
        out.update({f: getattr(exc, f) for f in _SERVICE_FIELDS})
        return out
    if isinstance(exc, _batcher.BatcherError) and kind in _ERROR_CLASSES:
        out = {"k": kind, "msg": str(exc)}
        out.update({f: getattr(exc, f) for f in _BATCHER_FIELDS if hasattr(exc, f)})
        return out
    if isinstance(exc, asyncio.CancelledError):
        return {"k": "ShuttingDown", "msg": "the request was cancelled"}
    # anything else is a bug in the engine: the client gets a 500 naming it
    return {"k": "ServiceError", "msg": f"engine error: {kind}: {exc}", "status": 500}


def decode_error(data: dict) -> Exception:
    cls = _ERROR_CLASSES.get(data.get("k"), _errors.ServiceError)
    msg = data.get("msg", "")
    if issubclass(cls, _errors.ServiceError):
        exc = cls(msg, field=data.get("field"), expected=data.get("expected"), received=data.get("received"),
                  headers=data.get("headers"))
        if data.get("status") not in (None, cls.status):
            exc.status = data["status"]
        return exc
    exc = cls.__new__(cls)
    Exception.__init__(exc, msg)
    for f in _BATCHER_FIELDS:
        if f in data:
            setattr(exc, f, data[f])
    return exc

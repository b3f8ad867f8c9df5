"""A small HTTP/2 server for unary gRPC calls, on asyncio: the transport of tpserve's gRPC endpoint.

Why not grpcio's server: its asyncio server costs about 0.23 ms of CPU per call in a Python process
(measured in bench/README.md), more than uvicorn's whole HTTP/1.1 request, so over gRPC a front end
answered fewer requests than over HTTP. Every RPC tpserve serves is unary, so it needs only this much
of HTTP/2 (RFC 9113) and gRPC's wire format:

* cleartext HTTP/2 with prior knowledge (what gRPC clients send to an ``insecure_channel``): the client
  preface, SETTINGS (acknowledged; the client's initial window and frame size are honoured), PING
  (answered), WINDOW_UPDATE, RST_STREAM (cancels the call: the handler's task is cancelled), GOAWAY,
  HEADERS + CONTINUATION (HPACK decoded by the ``hpack`` package), DATA (padding stripped); PRIORITY and
  unknown frame types are ignored;
* flow control both ways: the client may send 1 MiB per stream and 16 MiB per connection before a
  WINDOW_UPDATE, which the server sends as it consumes data, but not while the connection's unfinished
  requests hold more than the largest request allowed (so a connection holds a bounded amount of
  memory however many streams it opens); answers wait for the client's windows;
* limits: ``max_connections`` (beyond: GOAWAY and close), streams per connection (beyond: RST_STREAM
  REFUSED_STREAM), calls in progress (beyond: RESOURCE_EXHAUSTED), header block size; a client that
  resets more than half of over 1000 streams is closed (ENHANCE_YOUR_CALM, the "rapid reset" attack);
* gRPC: ``:path`` ``/<service>/<method>``, one length-prefixed message each way (compressed messages
  are refused with UNIMPLEMENTED), ``grpc-timeout`` (:meth:`Context.time_remaining`), metadata (for API
  keys), trailers ``grpc-status`` / percent-encoded ``grpc-message`` and the handler's trailing metadata;
  an error before any answer is a trailers-only response.

Handlers are grpcio's generated ``add_<Service>Servicer_to_server`` registrations (read through
:class:`Registry`), called as ``await handler(request, context)`` with a :class:`Context` that has the
part of grpcio's ``ServicerContext`` tpserve uses: ``abort``, ``set_trailing_metadata``,
``time_remaining``, ``invocation_metadata``.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time

from hpack import Decoder
from hpack.exceptions import HPACKError

__all__ = ["H2Server", "Context", "Abort", "Registry"]

logger = logging.getLogger("tpserve.grpc")

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FH = struct.Struct(">BHBBI")            # frame header: length (24 bits as 8 + 16), type, flags, stream id
_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONTINUATION = range(10)
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
_NO_ERROR, _PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _FRAME_SIZE_ERROR, _REFUSED_STREAM, _COMPRESSION_ERROR, \
    _ENHANCE_YOUR_CALM = 0x0, 0x1, 0x3, 0x6, 0x7, 0x9, 0xB

_MAX_FRAME = 1 << 20                     # the largest frame a client may send us (SETTINGS_MAX_FRAME_SIZE)
_STREAM_WINDOW = 1 << 20                 # bytes a client may send on a stream before our WINDOW_UPDATE
_CONN_WINDOW = 16 << 20                  # ... and on a connection
_MAX_WINDOW = (1 << 31) - 1
_RESETS_ALLOWED = 1000                   # streams a client may reset before resets past half its streams close it

# gRPC status codes (grpc.StatusCode values)
OK, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 8, 12, 13


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FH.pack(n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman coding (decoders keep no state
    for it: the same bytes are valid on every connection)."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


# ":status: 200" (static table index 8) and "content-type: application/grpc" (name at static index 31)
_RESPONSE_HEADERS = b"\x88" + _hpack_int(31, 4) + _hpack_int(16, 7) + b"application/grpc"
_OK_TRAILERS = _literal(b"grpc-status", b"0")


def _percent_encode(text: str) -> bytes:
    """``grpc-message``: UTF-8 with bytes outside printable ASCII, and ``%``, percent-encoded."""
    return b"".join(bytes([b]) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in text.encode())


def _trailers(code: int, message: str, metadata) -> bytes:
    block = _literal(b"grpc-status", str(code).encode())
    if message:
        block += _literal(b"grpc-message", _percent_encode(message))
    for key, value in metadata or ():
        block += _literal(key.lower().encode(), value.encode() if isinstance(value, str) else value)
    return block


_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def _timeout_s(value: bytes) -> float | None:
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None                      # malformed: no deadline (as grpcio, which ignores it)
    return int(digits) * unit


def _parse_headers(headers) -> tuple:
    """A call's decoded headers -> (path, timeout s, grpc-encoding, metadata, whether it is a gRPC request)."""
    path, timeout, encoding, method, ctype = None, None, b"identity", None, b""
    metadata = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
        elif name == b"content-type":
            ctype = value
        elif name == b"grpc-timeout":
            timeout = _timeout_s(value)
        elif name == b"grpc-encoding":
            encoding = value
        elif name not in (b"te", b"user-agent", b"grpc-accept-encoding", b"accept-encoding"):
            metadata.append((name.decode("latin-1"), value if name.endswith(b"-bin") else value.decode("latin-1")))
    ok = method == b"POST" and ctype.startswith(b"application/grpc") and path is not None
    return path, timeout, encoding, tuple(metadata), ok


def _all_indexed(block: bytes) -> bool:
    """Whether an HPACK block holds indexed header fields only (RFC 7541 6.1), which do not change the table."""
    i, n = 0, len(block)
    while i < n:
        if not block[i] & 0x80:
            return False
        if block[i] & 0x7F == 0x7F:                     # a multi-byte index
            i += 1
            while i < n and block[i] & 0x80:
                i += 1
        i += 1
    return True


class Abort(Exception):
    """Raised by :meth:`Context.abort`: ends the call with ``code`` (a ``grpc.StatusCode``) and ``details``."""

    def __init__(self, code, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """What a handler sees of its call (the part of grpcio's ``ServicerContext`` the servicers use)."""

    __slots__ = ("method", "_metadata", "_deadline", "trailing_metadata")

    def __init__(self, method: str, metadata: tuple, deadline: float | None):
        self.method, self._metadata, self._deadline = method, metadata, deadline
        self.trailing_metadata: tuple = ()

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata):
        self.trailing_metadata = tuple(metadata)

    async def abort(self, code, details: str = ""):
        raise Abort(code, details)


class Registry:
    """Collects the RPC handlers that grpcio's generated ``add_<Service>Servicer_to_server(servicer, server)``
    registers (it is the ``server`` they are given): ``handlers`` maps ``/<service>/<method>`` to grpcio's
    ``RpcMethodHandler`` (``unary_unary``, ``request_deserializer``, ``response_serializer``)."""

    def __init__(self):
        self.handlers: dict[str, object] = {}

    def add_generic_rpc_handlers(self, handlers):
        pass                              # the same methods come through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict):
        for name, handler in handlers.items():
            if handler.unary_unary is None:
                raise ValueError(f"/{service}/{name}: only unary RPCs are served")
            self.handlers[f"/{service}/{name}"] = handler


class _Stream:
    __slots__ = ("sid", "path", "headers_ok", "metadata", "timeout", "encoding", "body", "size", "held",
                 "send_window", "recv_unacked", "task", "pending", "early")

    def __init__(self, sid: int, send_window: int):
        self.sid = sid
        self.body: list[bytes] = []
        self.size = 0
        self.held = 0                       # bytes of ``body`` counted in the connection's ``buffered``
        self.send_window = send_window
        self.recv_unacked = 0
        self.task: asyncio.Task | None = None
        self.pending: list | None = None   # [data still to send, trailers block] while windows are closed
        self.early = False                  # answered before the client finished sending


class _Connection(asyncio.Protocol):
    def __init__(self, server: H2Server):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.preface = False
        self.decoder = Decoder()
        self.decoder.max_header_list_size = server.max_header_bytes
        self.parsed: dict[bytes, tuple] = {}   # header block -> _parse_headers(...), while the table allows it
        self.streams: dict[int, _Stream] = {}
        self.last_sid = 0
        self.send_window = 65535            # the connection's, for what we send
        self.peer_initial = 65535           # the client's initial stream window
        self.peer_max_frame = 16384
        self.recv_unacked = 0               # bytes consumed and not yet given back to the connection's window
        self.buffered = 0                   # bytes of requests still arriving
        self.opened = self.resets = 0
        self.continuation: tuple[int, int, bytearray] | None = None
        self.going_away = False
        self.out: list[bytes] = []            # frames queued for the next write (_write)

    # ------------------------------------------------------------------ plumbing
    def connection_made(self, transport):
        self.transport = transport
        if len(self.server.connections) >= self.server.max_connections:
            self._fail(_REFUSED_STREAM, f"more than {self.server.max_connections} gRPC connections")
            return
        self.server.connections.add(self)
        settings = struct.pack(">HIHIHIHI", 0x3, self.server.max_streams, 0x4, _STREAM_WINDOW, 0x5, _MAX_FRAME,
                               0x6, self.server.max_header_bytes)
        self._write(_frame(_SETTINGS, 0, 0, settings) + _frame(_WINDOW, 0, 0, struct.pack(">I", _CONN_WINDOW - 65535)))

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        for st in self.streams.values():
            if st.task is not None:
                st.task.cancel()
        self.streams.clear()

    def _write(self, data: bytes):
        """Queue ``data``; what is queued during one turn of the event loop (frames of many calls) goes out in
        one write."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(data)

    def _flush(self):
        if self.out:
            data, self.out = b"".join(self.out), []
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    def _fail(self, code: int, why: str):
        """A connection error: GOAWAY and close (the calls in progress are cancelled)."""
        logger.debug("gRPC connection error %d: %s", code, why)
        self._write(_frame(_GOAWAY, 0, 0, struct.pack(">II", self.last_sid, code) + why.encode()[:200]))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def goaway(self):
        """Refuse new calls on this connection (shutdown); the calls in progress go on."""
        if not self.going_away:
            self.going_away = True
            self._write(_frame(_GOAWAY, 0, 0, struct.pack(">II", self.last_sid, _NO_ERROR)))

    # ------------------------------------------------------------------ reading
    def data_received(self, data: bytes):
        buf = self.buf
        buf += data
        if not self.preface:
            if len(buf) < len(_PREFACE):
                if not _PREFACE.startswith(bytes(buf)):
                    self._fail(_PROTOCOL_ERROR, "not an HTTP/2 gRPC client (this port speaks gRPC)")
                return
            if buf[:len(_PREFACE)] != _PREFACE:
                self._fail(_PROTOCOL_ERROR, "not an HTTP/2 gRPC client (this port speaks gRPC)")
                return
            del buf[:len(_PREFACE)]
            self.preface = True
        pos, n = 0, len(buf)
        while n - pos >= 9:
            hi, lo, ftype, flags, sid = _FH.unpack_from(buf, pos)
            length = (hi << 16) | lo
            if length > _MAX_FRAME:
                self._fail(_FRAME_SIZE_ERROR, f"a frame of {length} bytes (limit {_MAX_FRAME})")
                return
            if n - pos - 9 < length:
                break
            with memoryview(buf) as view:
                payload = bytes(view[pos + 9:pos + 9 + length])       # one copy (a bytearray slice makes two)
            pos += 9 + length
            if not self._on_frame(ftype, flags, sid & 0x7FFFFFFF, payload):
                return
        del buf[:pos]

    def _on_frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> bool:
        if self.continuation is not None and ftype != _CONTINUATION:
            self._fail(_PROTOCOL_ERROR, "a header block was interrupted")
            return False
        if ftype == _DATA:
            return self._on_data(flags, sid, payload)
        if ftype == _HEADERS:
            if sid == 0 or sid % 2 == 0:
                self._fail(_PROTOCOL_ERROR, "HEADERS on a server or zero stream id")
                return False
            start, end = 0, len(payload)
            if flags & _PADDED:
                start, end = 1, end - payload[0]
            if flags & _PRIORITY_FLAG:
                start += 5
            if start > end:
                self._fail(_PROTOCOL_ERROR, "padding larger than the frame")
                return False
            block = bytearray(payload[start:end])
            if flags & _END_HEADERS:
                return self._on_headers(sid, flags, block)
            self.continuation = (sid, flags, block)
            return True
        if ftype == _CONTINUATION:
            if self.continuation is None or self.continuation[0] != sid:
                self._fail(_PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
                return False
            _, first_flags, block = self.continuation
            block += payload
            if len(block) > self.server.max_header_bytes * 2:
                self._fail(_PROTOCOL_ERROR, "header block too large")
                return False
            if flags & _END_HEADERS:
                self.continuation = None
                return self._on_headers(sid, first_flags, block)
            return True
        if ftype == _SETTINGS:
            if flags & _ACK or sid != 0:
                return True
            if len(payload) % 6:
                self._fail(_FRAME_SIZE_ERROR, "SETTINGS length")
                return False
            for i in range(0, len(payload), 6):
                key, value = struct.unpack_from(">HI", payload, i)
                if key == 0x4:                          # INITIAL_WINDOW_SIZE: moves every open stream's window
                    if value > _MAX_WINDOW:
                        self._fail(_FLOW_CONTROL_ERROR, "initial window too large")
                        return False
                    delta, self.peer_initial = value - self.peer_initial, value
                    for st in self.streams.values():
                        st.send_window += delta
                elif key == 0x5:
                    self.peer_max_frame = max(16384, min(value, _MAX_FRAME))
            self._write(_frame(_SETTINGS, _ACK, 0))
            self._flush_pending()
            return True
        if ftype == _PING:
            if not flags & _ACK:
                self._write(_frame(_PING, _ACK, 0, payload[:8]))
            return True
        if ftype == _WINDOW:
            if len(payload) != 4:
                self._fail(_FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
                return False
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
            elif sid in self.streams:
                self.streams[sid].send_window += inc
            self._flush_pending()
            return True
        if ftype == _RST:
            st = self.streams.pop(sid, None)
            if st is not None:
                self.resets += 1
                if st.task is not None:
                    st.task.cancel()        # the client cancelled the call (or its deadline passed)
                else:
                    self._release(st)
                if self.resets > _RESETS_ALLOWED and self.resets * 2 > self.opened:
                    self._fail(_ENHANCE_YOUR_CALM, "too many streams reset by the client")
                    return False
            return True
        if ftype == _GOAWAY:
            self.going_away = True
            return True
        if ftype == _PUSH:
            self._fail(_PROTOCOL_ERROR, "a client may not push")
            return False
        return True                                     # PRIORITY, unknown types: ignored

    def _on_headers(self, sid: int, flags: int, block: bytearray) -> bool:
        block = bytes(block)
        request = self.parsed.get(block)
        if request is None:
            try:
                headers = self.decoder.decode(block, raw=True)
            except HPACKError as e:
                self._fail(_COMPRESSION_ERROR, f"header block: {type(e).__name__}")
                return False
            request = _parse_headers(headers)
            # A block of indexed fields only leaves the decoder's table as it was, so the same bytes decode
            # the same way until a block that may change the table comes: clients repeat such blocks on every
            # call of a connection, and decoding them again is most of the cost of a small call.
            self.parsed = {block: request} if _all_indexed(block) else {}
        st = self.streams.get(sid)
        if st is not None:                              # trailers from the client: only END_STREAM matters
            if flags & _END_STREAM:
                self._start(st)
            return True
        if sid <= self.last_sid:
            self._fail(_PROTOCOL_ERROR, "a stream id was reused")
            return False
        self.last_sid = sid
        if self.going_away or len(self.streams) >= self.server.max_streams:
            self._write(_frame(_RST, 0, sid, struct.pack(">I", _REFUSED_STREAM)))
            return True
        st = self.streams[sid] = _Stream(sid, self.peer_initial)
        self.opened += 1
        st.path, st.timeout, st.encoding, st.metadata, st.headers_ok = request
        if flags & _END_STREAM:
            self._start(st)
        return True

    def _on_data(self, flags: int, sid: int, payload: bytes) -> bool:
        if sid == 0:
            self._fail(_PROTOCOL_ERROR, "DATA on stream 0")
            return False
        size = len(payload)
        self.recv_unacked += size
        st = self.streams.get(sid)
        if st is None or st.task is not None:
            self._replenish()
            return True                                 # a reset, answered or finished stream: dropped
        data = payload
        if flags & _PADDED:
            pad = payload[0] if payload else 0
            if pad >= size:
                self._fail(_PROTOCOL_ERROR, "padding larger than the frame")
                return False
            data = payload[1:size - pad]
        st.size += len(data)
        if st.size <= self.server.max_message + 5:
            st.body.append(data)
            st.held += len(data)
            self.buffered += len(data)
        if flags & _END_STREAM:
            self._start(st)
            return True
        if st.size > self.server.max_message + 5:
            st.early = True                             # answered now (RESOURCE_EXHAUSTED), the rest is dropped
            self._start(st)
            return True
        self._replenish()
        st.recv_unacked += size
        if st.recv_unacked >= _STREAM_WINDOW // 2:       # this stream may go on sending
            self._write(_frame(_WINDOW, 0, sid, struct.pack(">I", st.recv_unacked)))
            st.recv_unacked = 0
        return True

    # ------------------------------------------------------------------ calls
    def _replenish(self):
        """Give consumed bytes back to the connection's window, unless unfinished requests already hold more
        than the largest request allowed (then the client waits until some of them are complete)."""
        if self.recv_unacked >= _STREAM_WINDOW and self.buffered <= self.server.max_message + _STREAM_WINDOW:
            self._write(_frame(_WINDOW, 0, 0, struct.pack(">I", self.recv_unacked)))
            self.recv_unacked = 0

    def _release(self, st: _Stream):
        """A stream's request is complete (or dropped): its bytes no longer count as arriving."""
        self.buffered -= st.held
        st.held = 0
        self._replenish()

    def _start(self, st: _Stream):
        self._release(st)
        st.task = asyncio.get_running_loop().create_task(self._call(st))
        self.server.calls.add(st.task)
        st.task.add_done_callback(self.server.calls.discard)

    async def _call(self, st: _Stream):
        server = self.server
        trailers: tuple = ()
        payload = None
        try:
            code, message, context = self._check(st)
            if code == OK:
                handler = server.handlers[st.path.decode("latin-1")]
                data = b"".join(st.body)
                st.body = []
                try:
                    with memoryview(data) as view:
                        request = handler.request_deserializer(view[5:])      # no copy of a large message
                except Exception:  # noqa: BLE001 - a message that does not parse is the client's error
                    code, message = INTERNAL, "the request message does not parse as the method's request type"
                if code == OK:
                    try:
                        response = await handler.unary_unary(request, context)
                        payload = handler.response_serializer(response)
                    except Abort as e:
                        code, message = e.code.value[0], e.details
                        trailers = context.trailing_metadata
        except asyncio.CancelledError:
            self.streams.pop(st.sid, None)              # reset by the client, or the connection is gone
            raise
        except Exception:  # noqa: BLE001 - the client learns nothing of the internals
            logger.exception("gRPC %s failed", st.path)
            code, message, payload = INTERNAL, "internal server error (the server log has the details)", None
        self._respond(st, payload, code, message, trailers)

    def _check(self, st: _Stream) -> tuple[int, str, Context | None]:
        """(OK, "", context) for a well-formed call of a known method that may run, else (code, message, None)."""
        server = self.server
        if not st.headers_ok:
            return INTERNAL, "not a gRPC request: POST with content-type application/grpc expected", None
        path = st.path.decode("latin-1")
        if path not in server.handlers:
            return UNIMPLEMENTED, f"unknown method {path[:200]}", None
        if st.size > server.max_message + 5:
            return RESOURCE_EXHAUSTED, f"received message larger than max ({st.size - 5} vs. {server.max_message})", None
        head = st.body[0][:5] if st.body else b""
        if len(head) < 5 and st.body:
            head = b"".join(st.body)[:5]
        if len(head) < 5:
            return INTERNAL, "the request holds no gRPC message", None
        if head[0] != 0:
            return UNIMPLEMENTED, (f"compressed messages ({st.encoding.decode('latin-1')}) are not supported: send "
                                   "them uncompressed"), None
        if int.from_bytes(head[1:5], "big") != st.size - 5:
            return INTERNAL, "a unary call carries exactly one message", None
        if server.authorize is not None:
            denied = server.authorize(path, st.metadata)
            if denied is not None:
                return denied[0], denied[1], None
        if len(server.calls) > server.max_calls:
            return RESOURCE_EXHAUSTED, f"more than {server.max_calls} calls in progress", None
        deadline = time.monotonic() + st.timeout if st.timeout is not None else None
        return OK, "", Context(path, st.metadata, deadline)

    def _respond(self, st: _Stream, payload: bytes | None, code: int, message: str, trailers: tuple):
        if self.streams.get(st.sid) is not st or self.transport is None or self.transport.is_closing():
            return
        sid = st.sid
        if payload is None:                             # trailers-only
            self._write(_frame(_HEADERS, _END_HEADERS | _END_STREAM, sid,
                               _RESPONSE_HEADERS + _trailers(code, message, trailers)))
            self._finish(st)
            return
        self._write(_frame(_HEADERS, _END_HEADERS, sid, _RESPONSE_HEADERS))
        data = b"\x00" + len(payload).to_bytes(4, "big") + payload
        st.pending = [data, _OK_TRAILERS if not trailers else _trailers(OK, "", trailers)]
        self._send(st)

    def _send(self, st: _Stream):
        """As much of the stream's answer as the client's windows allow; the trailers once all data is out."""
        data, trailer_block = st.pending
        chunks = []
        while data:
            room = min(self.send_window, st.send_window, self.peer_max_frame)
            if room <= 0:
                break
            chunk, data = data[:room], data[room:]
            self.send_window -= len(chunk)
            st.send_window -= len(chunk)
            chunks.append(_frame(_DATA, 0, st.sid, chunk))
        if chunks:
            self._write(b"".join(chunks))
        if data:
            st.pending[0] = data                        # waits for a WINDOW_UPDATE (_flush_pending)
            return
        self._write(_frame(_HEADERS, _END_HEADERS | _END_STREAM, st.sid, trailer_block))
        self._finish(st)

    def _flush_pending(self):
        for st in [s for s in self.streams.values() if s.pending is not None]:
            if self.send_window <= 0:
                break
            self._send(st)

    def _finish(self, st: _Stream):
        st.pending = None
        self.streams.pop(st.sid, None)
        if st.early:                                    # the client may stop sending the rest (RFC 9113 8.1)
            self._write(_frame(_RST, 0, st.sid, struct.pack(">I", _NO_ERROR)))
        if self.going_away and not self.streams and self.server.stopping and self.transport is not None:
            self._flush()
            self.transport.close()


class H2Server:
    """Serves ``handlers`` (``/<service>/<method>`` -> grpcio ``RpcMethodHandler``, see :class:`Registry`).

    ``authorize(method, metadata)``: None to let the call run, or ``(code, message)`` to refuse it.
    ``max_message``: the largest request message (RESOURCE_EXHAUSTED beyond, as grpcio's
    ``grpc.max_receive_message_length``); ``max_calls``: calls in progress at once (RESOURCE_EXHAUSTED
    beyond); ``max_streams``: SETTINGS_MAX_CONCURRENT_STREAMS per connection; ``max_connections``: open
    connections (a connection beyond is sent GOAWAY and closed)."""

    def __init__(self, handlers: dict, *, max_message: int, max_calls: int, max_streams: int = 1000,
                 max_connections: int = 2048, max_header_bytes: int = 64 * 1024, authorize=None):
        self.handlers = handlers
        self.max_message, self.max_calls, self.max_streams = max_message, max_calls, max_streams
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.authorize = authorize
        self.connections: set[_Connection] = set()
        self.calls: set[asyncio.Task] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        """Listen on ``host:port`` (0: any free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_port=reuse_port,
                                                backlog=2048)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace_s: float | None = 5.0):
        """Refuse new calls at once (GOAWAY; the listening socket closes); calls in progress get ``grace_s``
        seconds to finish, then are cancelled; then every connection closes."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.goaway()
        if self.calls:
            await asyncio.wait(list(self.calls), timeout=grace_s or 0)
        for task in list(self.calls):
            task.cancel()
        if self.calls:
            await asyncio.wait(list(self.calls), timeout=1.0)
        for conn in list(self.connections):
            conn._flush()
            if conn.transport is not None:
                conn.transport.close()

"""The gRPC endpoint's own HTTP/2 transport (service/grpc/h2.py) against real gRPC clients (grpcio's, as
tritonclient and TF Serving's stubs use it) and raw sockets: flow control both ways with messages larger
than the windows, many calls multiplexed on one channel, cancellation, refused compression, unknown
methods, non-ASCII error messages, message size limits, a client that does not speak HTTP/2, the
header-block cache, and a graceful stop."""
from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc_grpc
from tritonclient.utils import InferenceServerException

from service import Settings
from service.grpc import h2
from service.model import TensorSpec

from .fakes import PATIENCE_S, FakeModel, HeldModel, doubler
from .test_grpc import grpc_error, grpc_input, running

BIG = 300_000          # float32 values per row: 1.2 MB, more than a stream's window either way


def big_model():
    return FakeModel("big", [TensorSpec("x", np.dtype("float32"), (BIG,))], lambda d: {"y": d["x"][:, ::-1] * 2})


def test_messages_larger_than_the_flow_control_windows_cross_both_ways():
    with running([big_model()], Settings(max_body_bytes=16 << 20)) as s:
        x = np.random.default_rng(0).random((2, BIG), dtype=np.float32)      # 2.4 MB each way
        r = s.triton.infer("big", [grpc_input("x", x)])
        np.testing.assert_array_equal(r.as_numpy("y"), x[:, ::-1] * 2)


def test_a_message_above_the_limit_is_resource_exhausted():
    with running([big_model()], Settings(max_body_bytes=1 << 20)) as s:
        e = grpc_error(lambda: s.triton.infer("big", [grpc_input("x", np.ones((1, BIG), np.float32))]))
        assert e.status() == "StatusCode.RESOURCE_EXHAUSTED" and "larger than max" in e.message()
        assert s.triton.is_server_live()       # the connection goes on serving


def test_many_calls_multiplexed_on_one_channel_each_get_their_own_answer():
    with running([doubler()]) as s:
        client = tc_grpc.InferenceServerClient(s.grpc_url)
        try:
            def call(i):
                x = np.full((1, 3), i, np.float32)
                return i, client.infer("double", [grpc_input("x", x)]).as_numpy("y")

            with ThreadPoolExecutor(32) as pool:
                for i, y in pool.map(call, range(300)):
                    np.testing.assert_array_equal(y, np.full((1, 3), 2 * i, np.float32))
        finally:
            client.close()


def raw_call(url: str, path: str, message: bytes, flag: int = 0, headers=(), after: bytes = b"") -> dict[str, str]:
    """One gRPC call written by hand (HTTP/2 preface, SETTINGS, HEADERS, DATA) on a raw socket; returns the
    answer's trailers (decoded with the ``hpack`` package, independent of the server's own encoder)."""
    from hpack import Decoder, Encoder

    def frame(ftype, flags, sid, payload=b""):
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload

    block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                              ("content-type", "application/grpc"), ("te", "trailers"), *headers])
    body = bytes([flag]) + len(message).to_bytes(4, "big") + message + after
    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=PATIENCE_S) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x4, 1, block)
                     + frame(0, 0x1, 1, body))
        decoder, data, out = Decoder(), b"", {}
        while True:
            while len(data) >= 9:
                n = int.from_bytes(data[:3], "big")
                if len(data) < 9 + n:
                    break
                ftype, flags, payload = data[3], data[4], data[9:9 + n]
                data = data[9 + n:]
                if ftype == 1:
                    out.update(decoder.decode(payload))
                    if flags & 0x1:
                        return out
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before the answer ended: {out}"
            data += chunk


def test_compressed_requests_are_refused_and_the_connection_goes_on():
    with running([doubler()]) as s:
        trailers = raw_call(s.grpc_url, "/inference.GRPCInferenceService/ServerLive", b"", flag=1,
                            headers=[("grpc-encoding", "gzip")])
        assert trailers["grpc-status"] == "12" and "compressed messages (gzip)" in trailers["grpc-message"]
        assert raw_call(s.grpc_url, "/inference.GRPCInferenceService/ServerLive", b"")["grpc-status"] == "0"
        x = np.ones((1, 3), np.float32)
        np.testing.assert_array_equal(s.triton.infer("double", [grpc_input("x", x)]).as_numpy("y"), 2 * x)


def test_a_request_that_is_not_one_message_is_refused():
    with running([doubler()]) as s:
        path = "/inference.GRPCInferenceService/ServerLive"
        trailers = raw_call(s.grpc_url, path, b"", after=b"\x00\x00\x00\x00\x00")      # and a second message
        assert trailers["grpc-status"] == "13" and "exactly one message" in trailers["grpc-message"]


def test_unknown_methods_are_unimplemented_and_error_text_survives_non_ascii():
    with running([doubler()]) as s:
        nope = s.channel.unary_unary("/inference.GRPCInferenceService/Nope")
        with pytest.raises(grpc.RpcError) as e:
            nope(b"")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED and "/Nope" in e.value.details()
        e = grpc_error(lambda: s.triton.get_model_metadata("modèle→%"))
        assert e.status() == "StatusCode.NOT_FOUND" and "'modèle→%'" in e.message()


def test_a_cancelled_call_is_dropped_and_the_connection_goes_on():
    held = HeldModel(doubler())
    with running([held]) as s:
        x = np.ones((1, 3), np.float32)
        e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", x)], client_timeout=0.2))
        assert e.status() == "StatusCode.DEADLINE_EXCEEDED"
        held.release()
        np.testing.assert_array_equal(s.triton.infer("double", [grpc_input("x", x)]).as_numpy("y"), 2 * x)


def test_a_client_that_does_not_speak_http2_gets_goaway_and_is_closed():
    with running([doubler()]) as s:
        host, port = s.grpc_url.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=PATIENCE_S) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        frames = []
        while len(data) >= 9:
            n = int.from_bytes(data[:3], "big")
            frames.append((data[3], data[9:9 + n]))
            data = data[9 + n:]
        goaway = [p for t, p in frames if t == 7]
        assert goaway and b"this port speaks gRPC" in goaway[0]
        assert s.triton.is_server_live()


def test_header_blocks_of_indexed_fields_only_are_recognised():
    assert h2._all_indexed(b"\x82\x86\x84\xbe")
    assert h2._all_indexed(b"\xff\x80\x01\x83")                  # a multi-byte index, then another field
    assert not h2._all_indexed(b"\x82\x40\x01a\x01b")             # a literal with incremental indexing
    assert not h2._all_indexed(b"\x82\x0f\x10\x03abc")            # a literal without indexing
    assert not h2._all_indexed(b"\x3f\xe1\x1f")                   # a table size update


def test_hpack_integers_and_percent_encoding():
    assert h2._hpack_int(10, 5) == b"\x0a"
    assert h2._hpack_int(1337, 5) == b"\x1f\x9a\x0a"               # RFC 7541 C.1.2
    assert h2._hpack_int(42, 8) == b"\x2a"
    assert h2._percent_encode("a b%c→") == b"a b%25c%E2%86%92"
    assert h2._timeout_s(b"250m") == 0.25 and h2._timeout_s(b"2S") == 2.0 and h2._timeout_s(b"1x") is None


def test_stop_refuses_new_calls_and_lets_the_running_one_finish():
    from prometheus_client import CollectorRegistry

    from service.grpc import start_grpc_server
    from service.manager import ModelManager
    from service.metrics import Metrics

    from .fakes import FakeRepository

    held = HeldModel(doubler())
    settings = Settings(grpc_port=0)
    results = {}

    async def main():
        manager = ModelManager(settings, Metrics(CollectorRegistry()), FakeRepository([held]))
        await manager.start()
        server = await start_grpc_server(settings, manager, manager.metrics, host="127.0.0.1", port=0)
        url = f"127.0.0.1:{server.port}"
        loop = asyncio.get_running_loop()
        client = tc_grpc.InferenceServerClient(url)
        x = np.ones((1, 3), np.float32)
        first = loop.run_in_executor(None, lambda: client.infer("double", [grpc_input("x", x)]).as_numpy("y"))
        await loop.run_in_executor(None, held.entered.wait, PATIENCE_S)
        stopping = loop.create_task(server.stop(PATIENCE_S))
        await asyncio.sleep(0)
        fresh = tc_grpc.InferenceServerClient(url)          # a new connection: the port is closed
        try:
            results["new"] = await loop.run_in_executor(None, lambda: fresh.is_server_live())
        except InferenceServerException as e:
            results["new"] = e.status()
        held.release()
        results["first"] = await first
        await stopping
        client.close()
        fresh.close()
        await manager.stop()

    asyncio.run(main())
    assert results["new"] == "StatusCode.UNAVAILABLE"
    np.testing.assert_array_equal(results["first"], np.full((1, 3), 2, np.float32))


def test_a_connection_stops_getting_window_while_unfinished_requests_hold_more_than_the_largest_request():
    """Requests that never end cannot make a connection hold unbounded memory: past the largest request
    allowed (plus a window), the server stops giving the connection's window back; a request completing
    frees its share and the window flows again."""
    sent = []

    class Transport:
        def write(self, data):
            sent.append(bytes(data))

        def is_closing(self):
            return False

        def close(self):
            pass

    def frame(ftype, flags, sid, payload=b""):
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload

    def window_updates():
        out = []
        for chunk in sent:
            while len(chunk) >= 9:
                n = int.from_bytes(chunk[:3], "big")
                if chunk[3] == 8 and int.from_bytes(chunk[5:9], "big") == 0:
                    out.append(int.from_bytes(chunk[9:13], "big"))
                chunk = chunk[9 + n:]
        return out

    from hpack import Encoder

    async def main():
        server = h2.H2Server({}, max_message=2 << 20, max_calls=10)
        conn = h2._Connection(server)
        conn.connection_made(Transport())
        enc = Encoder()
        conn.data_received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        chunk = b"\0" * (1 << 20)
        for sid in (1, 3, 5, 7):          # four requests of 1 MiB each that do not end
            block = enc.encode([(":method", "POST"), (":path", "/x/y"), ("content-type", "application/grpc")])
            conn.data_received(frame(1, 0x4, sid, block) + frame(0, 0, sid, chunk))
        await asyncio.sleep(0)
        granted = sum(window_updates()) - (h2._CONN_WINDOW - 65535)
        assert conn.buffered == 4 << 20
        assert granted == 3 << 20, granted     # given back while they held <= max_message + one window (3 MiB)
        conn.data_received(frame(3, 0, 1, (8).to_bytes(4, "big")))     # the client resets request 1
        await asyncio.sleep(0)
        assert conn.buffered == 3 << 20 and sum(window_updates()) - (h2._CONN_WINDOW - 65535) == 4 << 20

    asyncio.run(main())

"""The server's own HTTP limits (service/httpserver.py): header floods, silent and half-sent
connections, idle keep-alive and the connection cap, on a real uvicorn server."""
from __future__ import annotations

import socket

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app
from service.httpserver import uvicorn_limits

from .fakes import FakeRepository, doubler, wait_until
from .server import serve

MB = 1024 * 1024


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.fixture
def limited(request):
    """A server with short timeouts (1 s) and the default limits; ``@pytest.mark.parametrize("limited",
    [{...}], indirect=True)`` overrides settings."""
    settings = Settings(**{"header_timeout_s": 1.0, "keep_alive_timeout_s": 1.0, **getattr(request, "param", {})})
    app = create_app(settings, registry=CollectorRegistry(), repository=FakeRepository([doubler()]))
    with serve(app, **uvicorn_limits(settings)) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, "readiness")
            yield srv, client


def _connect(srv) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=30)


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _flood(srv, head: bytes, chunk: bytes, total: int) -> tuple[int, bytes]:
    """Send ``head`` then ``chunk`` repeatedly up to ``total`` bytes or until the server closes."""
    s, sent = _connect(srv), 0
    try:
        s.sendall(head)
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = _read_all(s)
    except ConnectionResetError:
        answer = b""
    s.close()
    return sent, answer


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)["error"]


def test_a_32_mb_flood_of_headers_is_431_and_cut_off(limited):
    srv, client = limited
    rss0 = _rss_bytes()
    sent, answer = _flood(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n" * 8192, 32 * MB)
    assert sent < 32 * MB                               # the server closed the connection early
    status, error = _status_and_error(answer)
    assert status == 431 and "more than 100 request headers" in error
    assert _rss_bytes() - rss0 < 100 * MB
    assert client.get("/healthz").status_code == 200


def test_one_64_mb_header_value_is_431(limited):
    srv, client = limited
    sent, answer = _flood(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 64 * MB)
    assert sent < 64 * MB
    status, error = _status_and_error(answer)
    assert status == 431 and "exceed 65536 bytes" in error
    assert client.get("/healthz").status_code == 200


def test_silent_and_half_sent_connections_are_closed_by_the_server(limited):
    srv, client = limited
    rss0 = _rss_bytes()
    silent, half = [], []
    try:
        silent += [_connect(srv) for _ in range(1000)]
        half += [_connect(srv) for _ in range(20)]
        for s in half:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-")
        assert client.get("/healthz").status_code == 200   # answered while 1,020 sockets hang
        assert all(_read_all(s) == b"" for s in silent)     # closed by the server, nothing said
        for s in half:
            status, error = _status_and_error(_read_all(s))
            assert status == 408 and "did not arrive within 1 s" in error
    finally:
        for s in silent + half:
            s.close()
    assert _rss_bytes() - rss0 < 100 * MB
    assert client.get("/healthz").status_code == 200


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(limited):
    srv, _ = limited
    s = _connect(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = _read_all(s)                               # returns once the server closes the idle connection
    assert answer.startswith(b"HTTP/1.1 200") and b'"status"' in answer
    s.close()


@pytest.mark.parametrize("limited", [{"max_connections": 64}], indirect=True)
def test_requests_beyond_the_connection_cap_get_503(limited):
    srv, client = limited
    client.close()                                      # its keep-alive connection would count too
    held = [_connect(srv) for _ in range(64)]
    try:
        # once the server has accepted all 64, a request on one more connection is refused
        wait_until(lambda: _probe_status(srv) == 503, "a 503 beyond the cap")
    finally:
        for s in held:
            s.close()
    wait_until(lambda: _probe_status(srv) == 200, "service below the cap")


def _probe_status(srv) -> int:
    with _connect(srv) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(_read_all(s).split()[1])

"""A small asyncio HTTP/1.1 load generator over raw sockets: closed loop and open loop (Poisson).

Used by ``bench/report.py`` (open-loop rate sweep) and by ``tests/reliability`` (overload,
accounting, soak). It speaks just enough HTTP/1.1 for tpserve and its baselines: keep-alive,
``Content-Length`` bodies, ``Connection: close``.

Every request has an integer id. Every id that was *sent* ends in exactly one :class:`Result`
(a status, or an error such as ``timeout``/``closed``), so a caller can check that nothing was lost.

* :func:`closed_loop` — ``concurrency`` connections, each sends its next request as soon as the
  previous answer arrived (what wrk does).
* :func:`open_loop` — requests arrive as a Poisson process of ``rate`` per second, whatever the
  server does; an arrival takes an idle connection or opens one (up to ``max_connections``).
  Latency is measured from the *scheduled* arrival, so a stalled client or server shows up in it
  (no coordinated omission). An arrival that finds ``max_connections`` busy is recorded with
  ``error="client_overflow"`` and is not sent. Idle connections are dropped after ``idle_expiry_s``
  (below uvicorn's 5 s keep-alive), and never reused once the server has closed them, so a request is
  not written into a connection the server is closing (the keep-alive race).

Both stop after ``duration_s`` (or when ``stop`` is set) and then wait at most ``timeout_s`` for
the requests in flight, so a run is bounded in time and in the number of requests.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Request", "Result", "build_request", "Connection", "closed_loop", "open_loop", "window_stats",
           "percentile", "summarize"]


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    id: int
    scheduled: float          # loop time the request was due (open loop) or sent (closed loop)
    sent: float | None        # loop time the bytes were written (None: never sent)
    done: float               # loop time the answer (or the error) arrived
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] | None = None
    body: bytes | None = None

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


def build_request(req: Request, host: str) -> bytes:
    head = [f"{req.method} {req.path} HTTP/1.1", f"Host: {host}"]
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    if req.body or req.method in ("POST", "PUT"):
        hdrs.setdefault("content-type", "application/json")
        hdrs["content-length"] = str(len(req.body))
    head += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + req.body


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.closed = False
        self.last_used = time.monotonic()

    def reusable(self, idle_expiry_s: float) -> bool:
        """Still open on both ends and not idle for too long (else: close it)."""
        if not self.closed and (self.reader.at_eof() or time.monotonic() - self.last_used > idle_expiry_s):
            self.close()
        return not self.closed

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=2 ** 24)
        return cls(reader, writer)

    async def roundtrip(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
            self.closed = True
        if headers.get("connection", "").lower() == "close":
            self.close()
        self.last_used = time.monotonic()
        return status, headers, body

    def close(self):
        if not self.closed:
            self.closed = True
            self.writer.close()


async def _one(conn: Connection, raw: bytes, rid: int, scheduled: float, timeout_s: float, keep_body: bool,
               loop) -> Result:
    sent = loop.time()
    try:
        status, headers, body = await asyncio.wait_for(conn.roundtrip(raw), timeout_s)
    except TimeoutError:
        conn.close()
        return Result(rid, scheduled, sent, loop.time(), error="timeout")
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
        conn.close()
        return Result(rid, scheduled, sent, loop.time(), error=f"closed: {type(e).__name__}")
    return Result(rid, scheduled, sent, loop.time(), status, None, headers, body if keep_body else None)


async def closed_loop(host: str, port: int, make_request: Callable[[int], Request], concurrency: int,
                      duration_s: float, *, timeout_s: float = 30.0, keep_body: bool = False,
                      max_requests: int = 10_000_000, stop: asyncio.Event | None = None) -> list[Result]:
    """``concurrency`` workers, each a connection sending back-to-back; bounded by time and count."""
    loop = asyncio.get_running_loop()
    results: list[Result] = []
    counter = iter(range(max_requests))
    end = loop.time() + duration_s
    hostport = f"{host}:{port}"

    async def worker():
        conn = None
        try:
            while loop.time() < end and not (stop is not None and stop.is_set()):
                rid = next(counter, None)
                if rid is None:
                    return
                if conn is None or conn.closed:
                    try:
                        conn = await asyncio.wait_for(Connection.open(host, port), timeout_s)
                    except (OSError, TimeoutError) as e:
                        t = loop.time()
                        results.append(Result(rid, t, None, t, error=f"connect: {type(e).__name__}"))
                        await asyncio.sleep(0.05)
                        continue
                t = loop.time()
                results.append(await _one(conn, build_request(make_request(rid), hostport), rid, t, timeout_s,
                                          keep_body, loop))
        finally:
            if conn is not None:
                conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def open_loop(host: str, port: int, make_request: Callable[[int], Request], rate: float, duration_s: float,
                    *, timeout_s: float = 30.0, max_connections: int = 1024, keep_body: bool = False,
                    seed: int = 0, max_requests: int | None = None, stop: asyncio.Event | None = None,
                    on_result: Callable[[Result], None] | None = None, idle_expiry_s: float = 2.0) -> list[Result]:
    """Poisson arrivals at ``rate``/s for ``duration_s``; see the module docstring."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    if max_requests is None:
        max_requests = int(rate * duration_s * 1.5 + 100)
    idle: deque[Connection] = deque()
    n_conns = 0
    results: list[Result] = []
    tasks: set[asyncio.Task] = set()
    hostport = f"{host}:{port}"

    def record(r: Result):
        results.append(r)
        if on_result is not None:
            on_result(r)

    async def fire(rid: int, scheduled: float):
        nonlocal n_conns
        raw = build_request(make_request(rid), hostport)
        conn = None
        while idle:
            c = idle.pop()
            if c.reusable(idle_expiry_s):
                conn = c
                break
            n_conns -= 1
        if conn is None:
            if n_conns >= max_connections:
                t = loop.time()
                record(Result(rid, scheduled, None, t, error="client_overflow"))
                return
            n_conns += 1
            try:
                conn = await asyncio.wait_for(Connection.open(host, port), timeout_s)
            except (OSError, TimeoutError) as e:
                n_conns -= 1
                t = loop.time()
                record(Result(rid, scheduled, None, t, error=f"connect: {type(e).__name__}"))
                return
        r = await _one(conn, raw, rid, scheduled, max(0.001, timeout_s - (loop.time() - scheduled)), keep_body,
                       loop)
        record(r)
        if conn.closed:
            n_conns -= 1
        else:
            idle.append(conn)

    start = loop.time()
    t_next = start
    rid = 0
    end = start + duration_s
    while rid < max_requests and not (stop is not None and stop.is_set()):
        t_next += rng.expovariate(rate)
        if t_next >= end:
            break
        delay = t_next - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = loop.create_task(fire(rid, t_next))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        rid += 1
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout_s + 5)
    for c in idle:
        c.close()
    return results


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, math.ceil(q / 100.0 * len(v)) - 1))
    return v[k]


def summarize(results: list[Result], t0: float | None = None, t1: float | None = None) -> dict:
    """Counts by status/error, throughput of 2xx, and latency percentiles of 2xx answers completing in [t0, t1)."""
    sel = [r for r in results if (t0 is None or r.done >= t0) and (t1 is None or r.done < t1)]
    ok = [r for r in sel if r.status is not None and 200 <= r.status < 300]
    lat = [r.latency for r in ok]
    by: dict[str, int] = {}
    for r in sel:
        key = str(r.status) if r.status is not None else r.error.split(":")[0]
        by[key] = by.get(key, 0) + 1
    span = (t1 - t0) if (t0 is not None and t1 is not None) else (
        (max(r.done for r in sel) - min(r.scheduled for r in sel)) if sel else 0.0)
    return {"n": len(sel), "ok": len(ok), "by_status": by, "ok_per_s": len(ok) / span if span > 0 else 0.0,
            "p50_s": percentile(lat, 50), "p90_s": percentile(lat, 90), "p99_s": percentile(lat, 99),
            "max_s": max(lat) if lat else None}


def window_stats(results: list[Result], start: float, window_s: float, n_windows: int) -> list[dict]:
    return [summarize(results, start + i * window_s, start + (i + 1) * window_s) for i in range(n_windows)]


def now() -> float:
    return time.monotonic()

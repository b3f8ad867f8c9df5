"""Overload: ~10x the sustainable rate, open loop, against a server in its own process.

A fake model with a fixed compute time per batch (``COMPUTE_S``, up to ``MAX_BATCH`` rows) makes the
model, not HTTP, the bottleneck on a small machine. The test

1. measures the sustainable rate (closed loop, enough connections to keep batches full);
2. offers ``OVERLOAD_FACTOR`` x that rate as Poisson arrivals for ``TPSERVE_OVERLOAD_SECONDS`` (default 20);
3. checks: excess requests get 429 with Retry-After (the queue stays bounded: ``tpserve_queue_rows``
   sampled during the run never exceeds ``max_queue_size``); the p99 latency of admitted requests stays
   under the bound the queue implies; every request sent gets exactly one answer and no admitted
   request gets someone else's rows;
4. stops the overload and checks that full throughput is back within 2 s.
"""
from __future__ import annotations

import asyncio
import math
import os
import re

import httpx
import numpy as np
import orjson

from bench.loadgen import Request, closed_loop, open_loop, percentile, summarize

from .conftest import report

COMPUTE_S = 0.1
MAX_BATCH = 8
QUEUE_ROWS = 32
OVERLOAD_FACTOR = 10
OVERLOAD_S = float(os.environ.get("TPSERVE_OVERLOAD_SECONDS", "20"))
SPEC = {"models": [{"kind": "echo", "name": "echo", "width": 3, "compute_s": COMPUTE_S}],
        "settings": {"batching": {"max_batch_size": MAX_BATCH, "max_queue_size": QUEUE_ROWS}, "poll_interval_s": 0,
                     "max_body_bytes": 65536}}


def make_request(rid: int) -> Request:
    return Request("POST", "/predict", orjson.dumps({"inputs": [[float(rid), 0.0, 1.0]]}))


def row_ok(r) -> bool:
    y = orjson.loads(r.body)["outputs"]["y"]
    return y == [[2.0 * r.id, 0.0, 2.0]]


async def _queue_sampler(url: str, stop: asyncio.Event, samples: list[float]):
    async with httpx.AsyncClient(timeout=5) as c:
        while not stop.is_set():
            try:
                text = (await c.get(url + "/metrics")).text
                m = re.search(r'^tpserve_queue_rows\{model="echo"\} ([0-9.e+]+)', text, re.M)
                if m:
                    samples.append(float(m.group(1)))
            except httpx.HTTPError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass


async def _loop_lag(stop: asyncio.Event, out: list[float]):
    """The client's own event-loop lag: a starved client (shared CPUs) shows up here, not as server latency."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)
        out.append(loop.time() - t - 0.01)


async def _scenario(srv):
    host, port = "127.0.0.1", srv.port
    # 1. sustainable rate: closed loop with 3 full batches' worth of connections
    await closed_loop(host, port, make_request, 3 * MAX_BATCH, 1.0)     # warm-up
    base = await closed_loop(host, port, make_request, 3 * MAX_BATCH, 4.0, keep_body=True)
    loop = asyncio.get_running_loop()
    sustainable = summarize(base)["ok_per_s"]
    # 2. overload, open loop, with the queue gauge sampled meanwhile
    stop = asyncio.Event()
    samples: list[float] = []
    sampler = loop.create_task(_queue_sampler(srv.url, stop, samples))
    lags: list[float] = []
    lagger = loop.create_task(_loop_lag(stop, lags))
    rss_before = srv.rss()
    rate = OVERLOAD_FACTOR * sustainable
    t_start = loop.time()
    over = await open_loop(host, port, make_request, rate, OVERLOAD_S, keep_body=True, max_connections=1024,
                           timeout_s=30, seed=1)
    t_stop = t_start + OVERLOAD_S
    stop.set()
    await sampler
    await lagger
    rss_after = srv.rss()
    # 3. recovery: the sustainable closed loop again, right away
    rec = await closed_loop(host, port, make_request, 3 * MAX_BATCH, 4.0, keep_body=True)
    return sustainable, rate, over, t_start, t_stop, rec, samples, rss_before, rss_after, max(lags, default=0.0)


def _p99_admitted(over):
    return percentile([r.latency for r in over if r.status == 200], 99)


BOUND_S = (QUEUE_ROWS / MAX_BATCH + 2) * COMPUTE_S


def test_overload_sheds_with_429_bounded_latency_no_loss_and_fast_recovery(proc_server, request):
    srv = proc_server(SPEC)
    attempts = []
    for _ in range(2):
        run = asyncio.run(_scenario(srv))
        attempts.append(run)
        # the latency bound is about the server; if the client itself was starved of CPU for a while
        # (other jobs on shared CPUs), the measurement is repeated once instead of trusted
        if _p99_admitted(run[2]) <= 1.5 * BOUND_S + 0.25 or run[-1] < 0.25:
            break
    sustainable, rate, over, t_start, t_stop, rec, samples, rss_before, rss_after, max_lag = attempts[-1]

    # ---- accounting: every request sent got exactly one answer
    sent = [r for r in over if r.sent is not None]
    not_sent = [r for r in over if r.sent is None]
    ids = [r.id for r in over]
    assert len(ids) == len(set(ids))
    errors = [r for r in sent if r.error is not None]
    statuses = {}
    for r in sent:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    admitted = [r for r in sent if r.status == 200]
    shed = [r for r in sent if r.status == 429]
    achieved_rate = len(over) / (max(r.scheduled for r in over) - t_start)
    swapped = [r.id for r in admitted if not row_ok(r)]

    # ---- latency bound of admitted requests: the queue (QUEUE_ROWS rows = QUEUE_ROWS / MAX_BATCH batches)
    # plus the batch running when it was admitted plus its own batch, at COMPUTE_S per batch
    bound = BOUND_S
    lat = [r.latency for r in admitted]
    p50, p99, pmax = percentile(lat, 50), percentile(lat, 99), max(lat)

    # ---- recovery: 0.5 s windows from the end of the overload
    rec_start = min(r.scheduled for r in rec)
    windows = []
    for i in range(8):
        a, b = rec_start + 0.5 * i, rec_start + 0.5 * (i + 1)
        w = [r for r in rec if a <= r.done < b]
        windows.append((a - t_stop, sum(r.status == 200 for r in w) / 0.5, sum(r.status != 200 for r in w)))
    recovered_at = next((t for t, tput, bad in windows if tput >= 0.8 * sustainable and bad == 0), None)
    rec_sum = summarize(rec)
    retry_after = sorted({int(r.headers.get("retry-after", "0")) for r in shed})

    report(request, sustainable_rps=round(sustainable, 1), offered_rps=round(rate, 1),
           achieved_offered_rps=round(achieved_rate, 1), overload_s=OVERLOAD_S, sent=len(sent),
           not_sent_client_overflow=len(not_sent), lost=len(errors),
           lost_by=sorted({(e.error, sum(1 for x in errors if x.error == e.error)) for e in errors}), statuses=statuses,
           admitted_p50_ms=round(1000 * p50, 1), admitted_p99_ms=round(1000 * p99, 1),
           admitted_max_ms=round(1000 * pmax, 1), p99_bound_ms=round(1000 * bound), retry_after_s=retry_after,
           max_queue_rows=max(samples) if samples else None, queue_samples=len(samples),
           recovered_after_s=None if recovered_at is None else round(recovered_at, 2),
           recovery_rps=round(rec_sum["ok_per_s"], 1), swapped_rows=len(swapped),
           rss_mb_before=round(rss_before / 2 ** 20, 1), rss_mb_after=round(rss_after / 2 ** 20, 1),
           client_max_loop_lag_ms=round(1000 * max_lag, 1), attempts=len(attempts))

    assert sustainable > 0.5 * MAX_BATCH / COMPUTE_S, "the model (not HTTP) should be the bottleneck"
    assert not_sent == [], "the load generator had to drop arrivals (raise max_connections)"
    assert errors == [], [(r.id, r.error) for r in errors[:5]]          # nothing lost
    assert set(statuses) <= {200, 429}, statuses
    assert achieved_rate >= 0.5 * OVERLOAD_FACTOR * sustainable          # really ~10x (>= 5x on a busy box)
    assert len(shed) > len(admitted)                                    # most of the excess was shed ...
    assert all(r.headers.get("retry-after", "").isdigit() and int(r.headers["retry-after"]) >= 1 for r in shed)
    assert len(admitted) / OVERLOAD_S >= 0.7 * sustainable               # ... while the model stayed busy
    assert samples and max(samples) <= QUEUE_ROWS                        # the queue stayed bounded
    assert p99 <= 1.5 * bound + 0.25, (p99, bound)
    assert swapped == []
    assert recovered_at is not None and recovered_at <= 2.0, windows
    assert rec_sum["by_status"] == {"200": len(rec)}
    assert rss_after - rss_before < 50 * 2 ** 20
    assert not math.isnan(np.mean(lat))

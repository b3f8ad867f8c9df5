"""Soak (``make soak``; not part of ``make test``): ``TPSERVE_SOAK_SECONDS`` (default 600) of mixed traffic
against ``python -m service`` serving the bundled digits model, in its own process.

Traffic (open loop, ``TPSERVE_SOAK_RATE`` requests/s, default 40): JSON ``/predict`` with 1-8 rows,
TF Serving ``:predict``, KServe v2 JSON and binary, PNG uploads (``/predict`` and ``:classify`` with
base64), malformed and unknown-model requests, ``/metrics``, ``/readyz``, ``/models``; some requests
ask for ``Connection: close`` so connections churn.

Checked: every request gets exactly one answer, with the status its kind should get; after the
warm-up (the first 20 %, at least 10 s) the server's RSS grows < 5 % and its file descriptors do not
leak (/proc/PID/status and /proc/PID/fd, sampled every second).

    TPSERVE_SOAK_SECONDS=60 make soak       # a shortened run
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import statistics

import numpy as np
import orjson
import pytest
from PIL import Image

from bench.loadgen import Request, open_loop, summarize

from .conftest import ROOT, report

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("TPSERVE_SOAK_SECONDS", "600"))
RATE = float(os.environ.get("TPSERVE_SOAK_RATE", "40"))
DIGITS = ROOT / "model_repository" / "digits"


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _mix(seed: int):
    """(make_request, expected status by request id)."""
    from model_zoo.datasets import load_digits

    x_all = load_digits().heldout_x.astype(np.float32)
    rng = np.random.default_rng(seed)
    pngs = [_png(rng) for _ in range(16)]
    pick = random.Random(seed)
    expected: dict[int, tuple[str, int]] = {}
    kinds = (["predict"] * 6 + ["v1"] * 3 + ["v2-json"] * 2 + ["v2-binary"] * 3 + ["png"] * 2 + ["b64"]
             + ["bad-json", "bad-shape", "unknown-model", "metrics", "readyz", "models"])

    def make(rid: int) -> Request:
        kind = pick.choice(kinds)
        n = pick.randint(1, 8)
        x = x_all[[pick.randrange(len(x_all)) for _ in range(n)]]
        headers = {"connection": "close"} if pick.random() < 0.1 else {}
        status = 200
        if kind == "predict":
            req = Request("POST", "/predict", orjson.dumps({"inputs": x.tolist()}), headers)
        elif kind == "v1":
            req = Request("POST", "/v1/models/digits:predict", orjson.dumps({"instances": x.tolist()}), headers)
        elif kind == "v2-json":
            t = {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}
            req = Request("POST", "/v2/models/digits/infer", orjson.dumps({"inputs": [t]}), headers)
        elif kind == "v2-binary":
            raw = np.ascontiguousarray(x, "<f4").tobytes()
            head = orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                             "parameters": {"binary_data_size": len(raw)}}],
                                 "parameters": {"binary_data_output": True}})
            req = Request("POST", "/v2/models/digits/infer", head + raw,
                          {**headers, "content-type": "application/octet-stream",
                           "inference-header-content-length": str(len(head))})
        elif kind == "png":
            req = Request("POST", "/predict", pick.choice(pngs), {**headers, "content-type": "image/png"})
        elif kind == "b64":
            body = {"instances": [{"b64": base64.b64encode(pick.choice(pngs)).decode()}]}
            req = Request("POST", "/v1/models/digits:classify", orjson.dumps(body), headers)
        elif kind == "bad-json":
            req, status = Request("POST", "/predict", b'{"inputs": [1, 2', headers), 400
        elif kind == "bad-shape":
            req, status = Request("POST", "/predict", orjson.dumps({"inputs": [[1, 2, 3]]}), headers), 400
        elif kind == "unknown-model":
            req, status = Request("POST", "/v2/models/nope/infer", b"{}", headers), 404
        else:
            req = Request("GET", "/" + kind, b"", headers)
        expected[rid] = (kind, status)
        return req

    return make, expected


async def _run(srv, make):
    loop = asyncio.get_running_loop()
    samples: list[tuple[float, int, int]] = []
    stop = asyncio.Event()

    async def sampler():
        t0 = loop.time()
        while not stop.is_set():
            samples.append((loop.time() - t0, srv.rss(), srv.fds()))
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    task = loop.create_task(sampler())
    results = await open_loop("127.0.0.1", srv.port, make, RATE, SECONDS, timeout_s=60, max_connections=256,
                              seed=3, max_requests=int(RATE * SECONDS * 2 + 100))
    await asyncio.sleep(1.5)            # let closed connections be reaped
    stop.set()
    await task
    samples.append((samples[-1][0] + 1, srv.rss(), srv.fds()))
    return results, samples


@pytest.mark.skipif(not (DIGITS / "config.json").is_file(), reason="the bundled model is not in this checkout")
def test_soak_mixed_traffic_no_leaks(proc_server, request, tmp_path):
    srv = proc_server(real_repository=DIGITS.parent, log_path=tmp_path / "server.log",
                      env={"TPSERVE_POLL_INTERVAL_S": "0", "TPSERVE_INTRA_OP_THREADS": "1",
                           "TPSERVE_INTER_OP_THREADS": "1"})
    make, expected = _mix(seed=1)
    rss_start, fds_start = srv.rss(), srv.fds()
    results, samples = asyncio.run(_run(srv, make))

    wrong = [(r.id, expected[r.id], r.status, r.error) for r in results if r.status != expected[r.id][1]]
    warm = max(10.0, 0.2 * SECONDS)
    after = [s for s in samples if s[0] >= warm]
    head = [s[1] for s in after[:5]]
    tail = [s[1] for s in after[-5:]]
    rss_warm, rss_end = statistics.median(head), statistics.median(tail)
    fds_warm = min(s[2] for s in after[:5])
    growth = (rss_end - rss_warm) / rss_warm
    s = summarize(results)
    report(request, seconds=SECONDS, rate=RATE, requests=len(results), statuses=s["by_status"],
           wrong_or_lost=len(wrong), p50_ms=round(1000 * s["p50_s"], 1), p99_ms=round(1000 * s["p99_s"], 1),
           rss_mb_start=round(rss_start / 2 ** 20, 1), rss_mb_after_warmup=round(rss_warm / 2 ** 20, 1),
           rss_mb_end=round(rss_end / 2 ** 20, 1), rss_growth_pct=round(100 * growth, 2),
           rss_mb_max=round(max(x[1] for x in samples) / 2 ** 20, 1), fds_start=fds_start,
           fds_after_warmup=fds_warm, fds_end=samples[-1][2], fds_max=max(x[2] for x in samples),
           rss_mb_every_10pct=[round(samples[min(len(samples) - 1, i * len(samples) // 10)][1] / 2 ** 20, 1)
                               for i in range(11)])
    assert sorted(r.id for r in results) == sorted(expected), "one answer per request"
    assert wrong == [], wrong[:10]
    assert growth < 0.05, f"RSS grew {100 * growth:.1f} % after warm-up"
    assert samples[-1][2] <= fds_warm + 5, "file descriptors leaked"

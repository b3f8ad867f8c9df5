"""Hostile clients against one server: does the event loop stay free?

Starts ``python -m service`` (default settings, bundled digits model) on 127.0.0.1. Four client
threads each send, over and over for ``--duration`` seconds, every hostile request of the
serving-engine issue:

* a 3 KB PNG declaring 4,000,000 x 1 pixels; a 6000 x 6000 PNG (under the 40 MP default);
* 32 MB of ``[],[],...`` as ``/predict`` inputs, TF Serving ``instances`` and v2 ``data``;
* 32 MB of headers (``X-A: b`` x 4 M); one 64 MB header value;
* a valid 3,000-row request (more rows than the 2,048-row queue can hold);
* 250 connections that send nothing (1,000 in all), held open.

Each client is a process of its own. Meanwhile a probe thread in this process times ``GET /healthz``
every 20 ms and a valid one-digit ``/predict`` every 100 ms. Prints (and with ``--out`` writes) the probes' p50/p99/max, how each hostile request was
answered, and the server's peak RSS.

    python -m bench.hostile --duration 30 --out bench/results/hostile-2026-11-29.json
"""
from __future__ import annotations

import argparse
import collections
import datetime
import io
import json
import multiprocessing
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from .http_servers import flood, rss_mb
from .serve import ROOT, Server, example_body

MB = 2**20


def _png(w: int, h: int, noise: bool = False) -> bytes:
    if noise:
        arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
    else:
        im = Image.new("L", (w, h))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def hostile_requests(url: str, port: int) -> list[tuple[str, callable]]:
    empty = b"[]," * (32 * MB // 3 - 100)
    bodies = {
        "predict_empty_lists": ("/predict", b'{"inputs": [' + empty + b"[]]}"),
        "v1_empty_lists": ("/v1/models/digits:predict", b'{"instances": [' + empty + b"[]]}"),
        "v2_empty_lists": ("/v2/models/digits/infer",
                           b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 28, 28], "data": ['
                           + empty + b"[]]}]}"),
        "rows_3000": ("/predict", json.dumps({"inputs": np.zeros((3000, 28, 28)).tolist()}).encode()),
    }
    png_tall, png_big = _png(4_000_000, 1), _png(6000, 6000)
    http = httpx.Client(base_url=url, timeout=120)

    def post(path, body, ctype="application/json"):
        return lambda: str(http.post(path, content=body, headers={"content-type": ctype}).status_code)

    reqs = [(k, post(p, b)) for k, (p, b) in bodies.items()]
    reqs += [("png_4000000x1", post("/predict", png_tall, "image/png")),
             ("png_6000x6000", post("/predict", png_big, "image/png")),
             ("header_flood_32mb", lambda: flood(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                                 b"X-A: b\r\n" * 8192, 32 * MB)["answer"]),
             ("header_64mb", lambda: flood(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                                           b"a" * 65536, 64 * MB)["answer"])]
    return reqs


def _client(url: str, port: int, duration_s: float, results) -> None:
    """One hostile client process: every hostile request in turn until ``duration_s`` is over, while
    holding 250 silent connections; puts {request: {answer: count}} on ``results``."""
    reqs = hostile_requests(url, port)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(250)]
    outcomes = collections.defaultdict(collections.Counter)
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        for name, fn in reqs:
            if time.monotonic() >= end:
                break
            try:
                outcomes[name][fn()] += 1
            except httpx.HTTPError as e:
                outcomes[name][type(e).__name__] += 1
    for s in idle:
        s.close()
    results.put({k: dict(v) for k, v in outcomes.items()})


def pct(values, q):
    return round(float(np.percentile(values, q)), 2) if values else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import model_zoo

    body = example_body(model_zoo.get("mnist-convnet"))
    srv = Server("service", ROOT / "model_repository", "digits")
    res = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "duration_s": args.duration,
           "clients": args.clients}
    try:
        srv.wait(body)
        stop = threading.Event()
        healthz, predict, predict_status, rss = [], [], collections.Counter(), []
        # The hostile clients are processes of their own: threads here would share this process's GIL
        # with the probe and time the client, not the server.
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        clients = [ctx.Process(target=_client, args=(srv.url, srv.port, args.duration, results), daemon=True)
                   for _ in range(args.clients)]

        def probe():
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                n = 0
                while not stop.is_set():
                    t0 = time.perf_counter()
                    c.get("/healthz")
                    healthz.append((time.perf_counter() - t0) * 1000)
                    if n % 5 == 0:
                        t0 = time.perf_counter()
                        r = c.post("/predict", content=body, headers={"content-type": "application/json"})
                        predict.append((time.perf_counter() - t0) * 1000)
                        predict_status[r.status_code] += 1
                        rss.append(rss_mb(srv.proc.pid))
                    n += 1
                    time.sleep(0.02)

        for p in clients:
            p.start()
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        outcomes = collections.defaultdict(collections.Counter)
        for _ in clients:
            for name, counts in results.get(timeout=args.duration + 600).items():
                outcomes[name].update(counts)
        stop.set()
        prober.join(60)
        for p in clients:
            p.join(60)
        res.update({
            "healthz_ms": {"n": len(healthz), "p50": pct(healthz, 50), "p99": pct(healthz, 99),
                           "max": round(max(healthz), 2)},
            "predict_ms": {"n": len(predict), "p50": pct(predict, 50), "p99": pct(predict, 99),
                           "max": round(max(predict), 2), "status": dict(predict_status)},
            "server_rss_mb": {"first": round(rss[0]), "peak": round(max(rss))},
            "hostile_outcomes": {k: dict(v) for k, v in outcomes.items()},
            "loadavg_end": os.getloadavg(),
        })
    finally:
        srv.stop()
    print(json.dumps({k: v for k, v in res.items() if k not in ("date", "machine")}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()

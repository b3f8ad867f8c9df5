"""Performance report (``make bench``): engine + serving benchmarks, a JSON record and PNG curves.

What it measures, for the bundled digits model (``model_repository/digits``):

* **engine** — the in-process predictor the service runs (``service.repository``), one call per batch
  at batch sizes 1..max: rows/s and per-call p50/p99 (the ceiling any server can reach); plus the
  predictor-vs-``Session.run`` overhead table of ``python -m bench.engine``.
* **servers** — ``service`` (``python -m service``, dynamic batching), ``naive`` (same predictor, one
  call per request) and ``floor`` (HTTP + JSON + validation, no model), from ``bench/baselines.py``:

  - closed loop: concurrency 1, 2, 4, ..., 128 (wrk, else bench/loadgen.py), and
  - open loop: Poisson arrivals (bench/loadgen.py) at fractions of each server's closed-loop peak.

  A point is measured in windows (5 s; ``--quick``: 2 s). It counts as **stable** when three
  consecutive windows agree within 10 % on throughput ((max - min) / mean <= 0.10); at most 6 windows
  (``--quick``: 4) are run, after which the point is reported with ``stable: false``. A point's figures
  are the means of its last three windows.
* for the service, at each load level, the deltas of its Prometheus histograms: the batch-size
  distribution (``tpserve_batch_size``) and the queue-wait vs compute split
  (``tpserve_queue_duration_seconds`` per request vs ``tpserve_inference_duration_seconds`` per batch).

Output: ``bench/results/<date>-<machine>.json`` and ``<date>-<machine>-*.png`` (matplotlib, Agg), and
the "Latest results" section of ``bench/README.md``. The machine may be shared with other work: the
load average before and after is recorded, and ``stable: false`` points say where it mattered.

    python -m bench.report --quick        # ~6 minutes on 2 cores
    python -m bench.report                # the full sweep (~30 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .loadgen import Request, closed_loop, open_loop, percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
SERVERS = ("service", "naive", "floor")
TOLERANCE = 0.10

FULL = {"concurrency": [1, 2, 4, 8, 16, 32, 64, 128], "window_s": 5.0, "max_windows": 6,
        "rate_fractions": [0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.2], "engine_s": 2.0,
        "engine_batches": [1, 2, 4, 8, 16, 32, 64]}
QUICK = {"concurrency": [1, 4, 16, 64], "window_s": 2.0, "max_windows": 4,
         "rate_fractions": [0.25, 0.5, 0.85, 1.1], "engine_s": 0.7, "engine_batches": [1, 4, 16, 64]}


# --------------------------------------------------------------------------------------------- helpers
def log(msg: str):
    print(msg, flush=True)


def agree(values: list[float], tol: float = TOLERANCE) -> bool:
    if len(values) < 3:
        return False
    last = values[-3:]
    mean = statistics.fmean(last)
    return mean > 0 and (max(last) - min(last)) / mean <= tol


def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"machine": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit, "loadavg_start": os.getloadavg()}


_METRIC_RE = re.compile(r'^(tpserve_[a-z_]+)\{([^}]*)\} ([0-9.eE+-]+|NaN|\+Inf)$', re.M)


def scrape(url: str, model: str) -> dict:
    """The service's histogram counters for ``model`` (cumulative since start)."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict = {"batch_buckets": {}}
    for name, labels, value in _METRIC_RE.findall(text):
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if lab.get("model") != model:
            continue
        v = float(value)
        if name == "tpserve_batch_size_bucket":
            out["batch_buckets"][lab["le"]] = v
        elif name in ("tpserve_batch_size_sum", "tpserve_batch_size_count", "tpserve_queue_duration_seconds_sum",
                      "tpserve_queue_duration_seconds_count", "tpserve_inference_duration_seconds_sum",
                      "tpserve_inference_duration_seconds_count"):
            out[name] = out.get(name, 0.0) + v
        elif name in ("tpserve_request_duration_seconds_sum", "tpserve_request_duration_seconds_count"):
            if lab.get("route") == "predict":
                out[name] = out.get(name, 0.0) + v
        elif name == "tpserve_rejected_total":
            out.setdefault("rejected", {})[lab.get("reason", "?")] = v
    return out


def metric_delta(a: dict, b: dict) -> dict:
    """What happened between two scrapes: batch-size distribution, mean queue wait and compute."""
    def d(k):
        return b.get(k, 0.0) - a.get(k, 0.0)

    edges = sorted((k for k in b["batch_buckets"] if k != "+Inf"), key=float)
    cum = [b["batch_buckets"][k] - a["batch_buckets"].get(k, 0.0) for k in edges]
    total = b["batch_buckets"].get("+Inf", 0.0) - a["batch_buckets"].get("+Inf", 0.0)
    counts, prev = {}, 0.0
    for k, c in zip(edges, cum, strict=True):
        counts[k] = c - prev
        prev = c
    counts["+Inf"] = total - prev
    batches = d("tpserve_batch_size_count")
    queued = d("tpserve_queue_duration_seconds_count")
    computed = d("tpserve_inference_duration_seconds_count")
    requests = d("tpserve_request_duration_seconds_count")
    rej_a, rej_b = a.get("rejected", {}), b.get("rejected", {})
    return {"batches": batches, "batch_size_counts": counts,
            "mean_batch": d("tpserve_batch_size_sum") / batches if batches else None,
            "mean_queue_ms": 1000 * d("tpserve_queue_duration_seconds_sum") / queued if queued else None,
            "mean_compute_ms": 1000 * d("tpserve_inference_duration_seconds_sum") / computed if computed else None,
            "mean_request_ms": 1000 * d("tpserve_request_duration_seconds_sum") / requests if requests else None,
            "rejected": {k: rej_b[k] - rej_a.get(k, 0.0) for k in rej_b if rej_b[k] - rej_a.get(k, 0.0)}}


# --------------------------------------------------------------------------------------------- engine
def engine_curve(repo: Path, model: str, batch_sizes: list[int], seconds: float) -> list[dict]:
    """The service's own predictor, in process: per batch size, rows/s and per-call latency."""
    from service.model import ModelConfig
    from service.repository import ModelRepository
    from service.settings import Settings

    repository = ModelRepository(Settings(model_repository=repo, warmup=False))
    cfg = next(c for c in repository.scan() if isinstance(c, ModelConfig) and c.name == model)
    m = repository.load(cfg, max(batch_sizes))
    rows = []
    try:
        rng = np.random.default_rng(0)
        for bs in batch_sizes:
            spec = m.inputs[0]
            lo, hi = spec.value_range or (0.0, 1.0)
            feeds = {spec.name: rng.uniform(lo, hi, (bs, *spec.shape)).astype(spec.dtype)}
            for _ in range(3):
                m.run_batch(0, feeds)
            lat, t0 = [], time.perf_counter()
            while time.perf_counter() - t0 < seconds or len(lat) < 5:
                t = time.perf_counter()
                m.run_batch(0, feeds)
                lat.append(time.perf_counter() - t)
            rows.append({"batch": bs, "rows_per_s": bs * len(lat) / sum(lat), "calls": len(lat),
                         "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99)})
            log(f"  engine   batch {bs:4d}: {rows[-1]['rows_per_s']:9.0f} rows/s  p50 {rows[-1]['p50_ms']:7.2f} ms"
                f"  p99 {rows[-1]['p99_ms']:7.2f} ms")
    finally:
        m.close()
    return rows


def engine_overhead_table(quick: bool) -> dict:
    """``python -m bench.engine`` (predictor vs bare Session.run), as text."""
    cmd = [sys.executable, "-m", "bench.engine", "--models", "mnist"] + (["--quick"] if quick else [])
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        return {"command": " ".join(cmd[1:]), "returncode": p.returncode, "output": p.stdout.strip()[-4000:],
                "stderr_tail": p.stderr.strip()[-800:] if p.returncode else ""}
    except (OSError, subprocess.SubprocessError) as e:
        return {"command": " ".join(cmd[1:]), "error": repr(e)}


# --------------------------------------------------------------------------------------------- servers
def closed_window_wrk(url: str, body_file: Path, conc: int, window_s: float) -> dict:
    from .serve import run_wrk

    r = run_wrk(url, body_file, conc, window_s)
    return {"rps": r["rps"] * (1 - (r["non2xx"] / r["requests"] if r["requests"] else 0)),
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "errors": r["socket_errors"] + r["non2xx"], "requests": r["requests"]}


def closed_window_py(port: int, body: bytes, conc: int, window_s: float) -> dict:
    res = asyncio.run(closed_loop("127.0.0.1", port, lambda i: Request("POST", "/predict", body), conc, window_s))
    ok = [r for r in res if r.status == 200]
    lat = [r.latency for r in ok]
    return {"rps": len(ok) / window_s, "p50_ms": 1000 * (percentile(lat, 50) or 0),
            "p99_ms": 1000 * (percentile(lat, 99) or 0), "errors": len(res) - len(ok), "requests": len(res)}


def closed_point(srv, kind: str, body: bytes, body_file: Path, conc: int, cfg: dict, model: str,
                 use_wrk: bool) -> dict:
    before = scrape(srv.url, model) if kind == "service" else None
    windows = []
    for _ in range(cfg["max_windows"]):
        w = (closed_window_wrk(srv.url, body_file, conc, cfg["window_s"]) if use_wrk
             else closed_window_py(srv.port, body, conc, cfg["window_s"]))
        windows.append(w)
        if agree([x["rps"] for x in windows]):
            break
    last = windows[-3:]
    point = {"mode": "closed", "server": kind, "concurrency": conc, "stable": agree([x["rps"] for x in windows]),
             "windows": windows, "rps": statistics.fmean(x["rps"] for x in last),
             "p50_ms": statistics.fmean(x["p50_ms"] for x in last), "p99_ms": statistics.fmean(x["p99_ms"] for x in last),
             "errors": sum(x["errors"] for x in windows), "loadavg_1m": os.getloadavg()[0]}
    if before is not None:
        point["metrics"] = metric_delta(before, scrape(srv.url, model))
    return point


async def _open_windows(port: int, body: bytes, rate: float, cfg: dict) -> tuple[list[dict], bool]:
    loop = asyncio.get_running_loop()
    done: list = []
    arrivals: list[float] = []     # when each request was issued (~ its scheduled Poisson arrival)
    stop = asyncio.Event()
    w_s, max_w = cfg["window_s"], cfg["max_windows"]
    t0 = loop.time()
    windows: list[dict] = []

    def window(i: int) -> dict:
        a, b = t0 + i * w_s, t0 + (i + 1) * w_s
        sel = [r for r in done if a <= r.done < b]
        ok = [r for r in sel if r.status == 200]
        lat = [r.latency for r in ok]
        return {"offered_rps": sum(1 for t in arrivals if a <= t < b) / w_s, "rps": len(ok) / w_s,
                "p50_ms": 1000 * (percentile(lat, 50) or 0), "p99_ms": 1000 * (percentile(lat, 99) or 0),
                "rejected": sum(1 for r in sel if r.status == 429), "errors": sum(1 for r in sel if r.error)}

    async def monitor():
        i = 0
        while not stop.is_set() and i < max_w:
            await asyncio.sleep(max(0.0, t0 + (i + 1) * w_s + 0.05 - loop.time()))
            windows.append(window(i))
            i += 1
            if agree([w["rps"] for w in windows]):
                stop.set()

    mon = loop.create_task(monitor())
    def make(i: int) -> Request:
        arrivals.append(loop.time())
        return Request("POST", "/predict", body)

    await open_loop("127.0.0.1", port, make, rate, w_s * max_w + 0.1,
                    stop=stop, on_result=done.append, timeout_s=10, max_connections=2048, seed=int(rate))
    stop.set()
    await mon
    drops = sum(1 for r in done if r.error == "client_overflow")
    if drops and windows:
        windows[-1]["client_overflow"] = drops
    return windows, agree([w["rps"] for w in windows])


def open_point(srv, kind: str, body: bytes, rate: float, cfg: dict, model: str) -> dict:
    before = scrape(srv.url, model) if kind == "service" else None
    windows, stable = asyncio.run(_open_windows(srv.port, body, rate, cfg))
    last = windows[-3:] or [{"rps": 0, "p50_ms": 0, "p99_ms": 0, "offered_rps": 0}]
    point = {"mode": "open", "server": kind, "rate": rate, "stable": stable, "windows": windows,
             "offered_rps": statistics.fmean(x["offered_rps"] for x in last),
             "rps": statistics.fmean(x["rps"] for x in last), "p50_ms": statistics.fmean(x["p50_ms"] for x in last),
             "p99_ms": statistics.fmean(x["p99_ms"] for x in last),
             "rejected": sum(x.get("rejected", 0) for x in windows), "errors": sum(x.get("errors", 0) for x in windows),
             "loadavg_1m": os.getloadavg()[0]}
    if before is not None:
        point["metrics"] = metric_delta(before, scrape(srv.url, model))
    time.sleep(1.0)   # let a backlog drain before the next point
    return point


def bench_server(kind: str, repo: Path, model: str, body: bytes, cfg: dict, use_wrk: bool) -> list[dict]:
    from .serve import Server

    points = []
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(body)
        body_file = Path(f.name)
    srv = Server(kind, repo, model, 1)
    try:
        srv.wait(body)
        log(f"{kind}: warming up")
        if use_wrk:
            closed_window_wrk(srv.url, body_file, max(cfg["concurrency"]), 2)
        else:
            closed_window_py(srv.port, body, max(cfg["concurrency"]), 2)
        for c in cfg["concurrency"]:
            p = closed_point(srv, kind, body, body_file, c, cfg, model, use_wrk)
            points.append(p)
            extra = f"  mean batch {p['metrics']['mean_batch']:.1f}" if p.get("metrics", {}).get("mean_batch") else ""
            log(f"  {kind:8s} closed c={c:<4d} {p['rps']:8.1f} req/s  p50 {p['p50_ms']:8.2f} ms  p99 "
                f"{p['p99_ms']:8.2f} ms  windows {len(p['windows'])}{'' if p['stable'] else ' UNSTABLE'}{extra}")
        peak = max(p["rps"] for p in points)
        for frac in cfg["rate_fractions"]:
            rate = max(1.0, frac * peak)
            p = open_point(srv, kind, body, rate, cfg, model)
            p["fraction_of_peak"] = frac
            points.append(p)
            log(f"  {kind:8s} open   {rate:7.1f}/s ({frac:.2f} x peak; offered {p['offered_rps']:.0f}/s) -> "
                f"{p['rps']:8.1f} ok/s  p50 "
                f"{p['p50_ms']:8.2f} ms  p99 {p['p99_ms']:8.2f} ms  rejected {p['rejected']}"
                f"{'' if p['stable'] else ' UNSTABLE'}")
    finally:
        srv.stop()
        body_file.unlink()
    return points


# --------------------------------------------------------------------------------------------- summary
def knee(points: list[dict]) -> dict | None:
    """The closed-loop point with the lowest concurrency reaching 90 % of the peak throughput."""
    closed = sorted((p for p in points if p["mode"] == "closed"), key=lambda p: p["concurrency"])
    if not closed:
        return None
    peak = max(p["rps"] for p in closed)
    k = next(p for p in closed if p["rps"] >= 0.9 * peak)
    return {"peak_rps": peak, "knee_concurrency": k["concurrency"], "knee_rps": k["rps"], "knee_p50_ms": k["p50_ms"],
            "knee_p99_ms": k["p99_ms"]}


def summary_table(result: dict) -> list[str]:
    lines = ["| server | peak req/s (closed loop) | knee: concurrency | knee req/s | knee p50 ms | knee p99 ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in SERVERS:
        k = result["summary"].get(kind)
        if k:
            lines.append(f"| {kind} | {k['peak_rps']:.0f} | {k['knee_concurrency']} | {k['knee_rps']:.0f} | "
                         f"{k['knee_p50_ms']:.1f} | {k['knee_p99_ms']:.1f} |")
    eng = result.get("engine", {}).get("curve") or []
    if eng:
        best = max(eng, key=lambda r: r["rows_per_s"])
        lines.append(f"| engine (in-process) | {best['rows_per_s']:.0f} rows/s at batch {best['batch']} | - | - | "
                     f"{best['p50_ms']:.1f} (per call) | {best['p99_ms']:.1f} (per call) |")
    return lines


# --------------------------------------------------------------------------------------------- plots
COLORS = {"service": "tab:blue", "naive": "tab:orange", "floor": "tab:green", "engine": "tab:gray"}


def plot(result: dict, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    pts = result["points"]
    title = f"{result['model']} on {result['meta']['machine']} ({result['meta']['cpus']} CPUs, {result['meta']['date']})"

    # 1. throughput vs p99, closed loop (solid) and open loop (dashed), engine ceiling (dotted)
    fig, ax = plt.subplots(figsize=(9, 6))
    for kind in SERVERS:
        c = sorted((p for p in pts if p["server"] == kind and p["mode"] == "closed"), key=lambda p: p["concurrency"])
        if c:
            ax.plot([p["rps"] for p in c], [p["p99_ms"] for p in c], "o-", color=COLORS[kind],
                    label=f"{kind} (closed loop)")
            for p in c:
                ax.annotate(f"c={p['concurrency']}", (p["rps"], p["p99_ms"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points", color=COLORS[kind])
            for p in c:
                if not p["stable"]:
                    ax.plot([p["rps"]], [p["p99_ms"]], "x", color="red", ms=9)
        o = sorted((p for p in pts if p["server"] == kind and p["mode"] == "open" and p["p99_ms"] > 0),
                   key=lambda p: p["rate"])
        if o:
            ax.plot([p["rps"] for p in o], [p["p99_ms"] for p in o], "s--", color=COLORS[kind], alpha=0.6,
                    label=f"{kind} (open loop, Poisson)")
    eng = result.get("engine", {}).get("curve") or []
    if eng:
        ax.plot([r["rows_per_s"] for r in eng], [r["p99_ms"] for r in eng], "d:", color=COLORS["engine"],
                label="engine, in-process (rows/s vs p99 per batch call)")
        for r in eng:
            ax.annotate(f"b={r['batch']}", (r["rows_per_s"], r["p99_ms"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points", color=COLORS["engine"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (successful requests/s; engine: rows/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(f"Throughput vs p99 — {title}\n(red x: point not stable within 10 % over 3 windows)", fontsize=9)
    ax.set_xlim(left=max(1.0, ax.get_xlim()[0]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    files.append(_save(fig, stem, "throughput-p99"))

    # 2. open loop: latency and goodput vs offered rate
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5))
    for kind in SERVERS:
        o = sorted((p for p in pts if p["server"] == kind and p["mode"] == "open"), key=lambda p: p["rate"])
        if not o:
            continue
        a1.plot([p["offered_rps"] for p in o], [max(p["p99_ms"], 1e-3) for p in o], "o-", color=COLORS[kind],
                label=f"{kind} p99")
        a1.plot([p["offered_rps"] for p in o], [max(p["p50_ms"], 1e-3) for p in o], ".:", color=COLORS[kind],
                label=f"{kind} p50")
        a2.plot([p["offered_rps"] for p in o], [p["rps"] for p in o], "o-", color=COLORS[kind], label=kind)
    a1.set_yscale("log")
    a1.set_xlabel("offered rate (Poisson, requests/s)")
    a1.set_ylabel("latency of successful requests (ms)")
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=8)
    lim = max([p["offered_rps"] for p in pts if p["mode"] == "open"] or [1])
    a2.plot([0, lim], [0, lim], color="black", lw=0.5, alpha=0.5)
    a2.set_xlabel("offered rate (requests/s)")
    a2.set_ylabel("successful requests/s")
    a2.grid(True, alpha=0.3)
    a2.legend(fontsize=8)
    fig.suptitle(f"Open loop — {title}", fontsize=9)
    files.append(_save(fig, stem, "open-loop"))

    # 3. service: batch-size distribution per load level
    levels = _service_levels(pts)
    if levels:
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(levels) + 2.4))
        edges = sorted({k for _, p in levels for k in p["metrics"]["batch_size_counts"]},
                       key=lambda k: float("inf") if k == "+Inf" else float(k))
        used = [i for i, k in enumerate(edges) if any(p["metrics"]["batch_size_counts"].get(k) for _, p in levels)]
        edges = edges[: (max(used) + 1) if used else 1]          # drop the empty buckets above the largest batch
        labels, prev = [], 0
        for k in edges:
            hi = float("inf") if k == "+Inf" else int(float(k))
            labels.append(f">{prev}" if hi == float("inf") else (str(hi) if hi == prev + 1 else f"{prev + 1}-{hi}"))
            prev = hi if hi != float("inf") else prev
        cmap = plt.get_cmap("viridis", len(edges))
        for row, (_name, p) in enumerate(levels):
            counts = p["metrics"]["batch_size_counts"]
            total = sum(counts.values()) or 1
            left = 0.0
            for j, k in enumerate(edges):
                frac = counts.get(k, 0.0) / total
                if frac > 0:
                    ax.barh(row, frac, left=left, color=cmap(j), edgecolor="white", lw=0.5)
                    if frac > 0.08:
                        ax.text(left + frac / 2, row, labels[j], ha="center", va="center", fontsize=7, color="white")
                left += frac
        ax.set_yticks(range(len(levels)), [f"{n}  (mean {p['metrics']['mean_batch'] or 0:.1f})" for n, p in levels],
                      fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("fraction of executed batches, by batch size (rows)")
        ax.set_xlim(0, 1)
        handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(j)) for j in range(len(edges))]
        ax.legend(handles, labels, title="rows per batch", fontsize=7, ncols=min(8, len(edges)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.18 - 0.6 / len(levels)), frameon=False)
        ax.set_title(f"Service: batch sizes per load level (tpserve_batch_size deltas)\n{title}", fontsize=9)
        files.append(_save(fig, stem, "batch-sizes"))

        # 4. service: queue wait vs compute per load level
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(levels) + 2.4))
        for row, (_name, p) in enumerate(levels):
            m = p["metrics"]
            q, c = m["mean_queue_ms"] or 0.0, m["mean_compute_ms"] or 0.0
            ax.barh(row, q, color="tab:red", label="queue wait per request" if row == 0 else None)
            ax.barh(row, c, left=q, color="tab:blue", label="compute per batch" if row == 0 else None)
            if m.get("mean_request_ms"):
                ax.plot([m["mean_request_ms"]], [row], "k|", ms=14,
                        label="server-side request time (mean)" if row == 0 else None)
        ax.set_yticks(range(len(levels)), [n for n, _ in levels], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("milliseconds (means over the point; symlog)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.6 / len(levels)), ncols=3,
                  frameon=False)
        ax.set_title("Service: mean queue wait per request (tpserve_queue_duration_seconds) vs mean compute per batch "
                     f"(tpserve_inference_duration_seconds)\n{title}", fontsize=9)
        files.append(_save(fig, stem, "queue-vs-compute"))
    plt.close("all")
    return files


def _service_levels(pts: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for p in pts:
        if p["server"] != "service" or not p.get("metrics") or not p["metrics"]["batches"]:
            continue
        name = (f"closed c={p['concurrency']}" if p["mode"] == "closed"
                else f"open {p['offered_rps']:.0f}/s ({p['fraction_of_peak']:.2f}x)")
        out.append((name, p))
    return out


def _save(fig, stem: str, what: str) -> str:
    path = RESULTS / f"{stem}-{what}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def _load_note(result: dict) -> str:
    loads = [p["loadavg_1m"] for p in result["points"] if "loadavg_1m" in p]
    if not loads:
        return ""
    cpus = result["meta"]["cpus"] or 1
    note = f"; 1-minute load average at the end of each point: {min(loads):.1f} to {max(loads):.1f}"
    if max(loads) > cpus + 1.5:
        note += (f" (a server plus its client load {cpus} CPUs by themselves: above ~{cpus + 1.5:g}, other jobs were "
                 "running — **compare shapes, treat absolute numbers with care**; per-point values are in the JSON)")
    return note


def update_readme(result: dict, json_name: str, pngs: list[str]):
    meta = result["meta"]
    cfg = result["config"]
    block = [
        "<!-- latest:begin (written by bench/report.py) -->",
        f"Run **{meta['date']}** on **{meta['machine']}** — {meta['cpu'] or 'unknown CPU'}, {meta['cpus']} CPUs, "
        f"Python {meta['python']}, commit `{meta['commit']}`; mode: **{'quick' if result['quick'] else 'full'}** "
        f"({cfg['window_s']:g} s windows, up to {cfg['max_windows']}); load average before/after: "
        f"{', '.join(f'{x:.1f}' for x in meta['loadavg_start'])} / "
        f"{', '.join(f'{x:.1f}' for x in meta['loadavg_end'])}" + _load_note(result) + ".",
        "",
        f"Raw data: [`results/{json_name}`](results/{json_name}). Unstable points "
        f"(3 consecutive windows not within 10 %): {result['unstable_points']} of {len(result['points'])}.",
        "",
        *summary_table(result),
        "",
    ]
    for png in pngs:
        block += [f"![{png}](results/{png})", ""]
    block.append("<!-- latest:end -->")
    text = README.read_text() if README.exists() else "# Benchmarks\n\n## Latest results\n\n"
    if "<!-- latest:begin" in text:
        text = re.sub(r"<!-- latest:begin.*?<!-- latest:end -->", lambda _: "\n".join(block), text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + "\n".join(block) + "\n"
    README.write_text(text)


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer points, 2 s windows (a few minutes)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of service,naive,floor")
    ap.add_argument("--model-repository", default=str(ROOT / "model_repository"))
    ap.add_argument("--model", default="digits")
    ap.add_argument("--no-engine", action="store_true", help="skip the engine measurements")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite bench/README.md")
    ap.add_argument("--python-client", action="store_true", help="closed loop with bench/loadgen.py even if wrk exists")
    ap.add_argument("--concurrency", help="override the closed-loop levels, e.g. 1,8,64")
    ap.add_argument("--rate-fractions", help="override the open-loop rates, as fractions of the peak, e.g. 0.5,1")
    ap.add_argument("--window-s", type=float, help="override the window length (s)")
    ap.add_argument("--max-windows", type=int, help="override the most windows per point (>= 3)")
    ap.add_argument("--replot", metavar="JSON", help="only redraw the plots (and README) from a results file")
    a = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)

    if a.replot:
        result = json.loads(Path(a.replot).read_text())
        stem = Path(a.replot).stem
        pngs = plot(result, stem)
        if not a.no_readme:
            update_readme(result, Path(a.replot).name, pngs)
        log("\n".join(pngs))
        return 0

    cfg = dict(QUICK if a.quick else FULL)
    if a.concurrency:
        cfg["concurrency"] = [int(x) for x in a.concurrency.split(",")]
    if a.rate_fractions:
        cfg["rate_fractions"] = [float(x) for x in a.rate_fractions.split(",")]
    if a.window_s:
        cfg["window_s"] = a.window_s
    if a.max_windows:
        cfg["max_windows"] = max(3, a.max_windows)
    servers = [s for s in a.servers.split(",") if s]
    repo = Path(a.model_repository)
    if not (repo / a.model).is_dir():
        sys.exit(f"bench/report.py: no model {a.model!r} in {repo} (the bundled digits model is expected there)")
    use_wrk = shutil.which("wrk") is not None and not a.python_client
    meta = machine_info()
    meta["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["closed_loop_client"] = "wrk" if use_wrk else "bench/loadgen.py"
    log(f"bench/report.py ({'quick' if a.quick else 'full'}) on {meta['machine']}: {meta['cpus']} CPUs, "
        f"load {meta['loadavg_start'][0]:.1f}; closed loop with {meta['closed_loop_client']}")

    import model_zoo
    from service.settings import load_config_file

    from .serve import example_body

    conf = next(repo / a.model / n for n in ("config.json", "config.yaml", "config.yml") if (repo / a.model / n).is_file())
    model_cfg = load_config_file(conf)
    zoo = model_zoo.get(model_cfg["architecture"], **(model_cfg.get("options") or {}))
    body = example_body(zoo)

    result = {"model": a.model, "quick": a.quick, "config": cfg, "meta": meta, "points": [], "engine": {}}
    t0 = time.monotonic()
    if not a.no_engine:
        log("engine: the service's predictor in process")
        result["engine"]["curve"] = engine_curve(repo, a.model, cfg["engine_batches"], cfg["engine_s"])
        log("engine: python -m bench.engine (predictor vs Session.run)")
        result["engine"]["overhead"] = engine_overhead_table(a.quick)
        log(result["engine"]["overhead"].get("output", result["engine"]["overhead"].get("error", ""))[-1500:])
    for kind in servers:
        log(f"{kind}: starting")
        result["points"] += bench_server(kind, repo, a.model, body, cfg, use_wrk)
    meta["loadavg_end"] = os.getloadavg()
    meta["seconds"] = round(time.monotonic() - t0, 1)
    result["summary"] = {k: knee([p for p in result["points"] if p["server"] == k]) for k in servers}
    result["unstable_points"] = sum(1 for p in result["points"] if not p["stable"])

    stem = f"{datetime.date.today().isoformat()}-{re.sub(r'[^A-Za-z0-9_.-]', '_', meta['machine'])}"
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    pngs = plot(result, stem)
    if not a.no_readme:
        update_readme(result, out.name, pngs)
    log("")
    log("\n".join(summary_table(result)))
    log(f"\nresults: {out}\nplots: {', '.join(pngs)}\n({meta['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

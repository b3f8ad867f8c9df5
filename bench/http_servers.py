"""Which HTTP server runs the ASGI app: uvicorn + tpserve's limits (service/httpserver.py) vs Granian.

Both serve the same app (``service.app.create_app``, bundled digits model, default settings) in one
process on 127.0.0.1. For each server it measures:

* throughput: ``wrk`` closed loop on ``POST /predict`` (one digit per request) at each concurrency;
* a 32 MB flood of headers (``X-A: b`` x 4 M): the answer, bytes accepted before the server closed,
  and the server's RSS growth;
* one 64 MB header value: the same;
* 1,000 connections that send nothing: how many the server has closed 5 s after the header timeout,
  and ``/healthz`` latency while they are open;
* tpserve's connection cap has no Granian counterpart for ASGI (``--backpressure`` queues instead).

Granian is not a dependency: ``pip install 'granian>=2,<3'`` (the ``bench`` extra has it).

    python -m bench.http_servers                     # both servers, c = 1, 8, 64, 10 s each
    python -m bench.http_servers --duration 5 --concurrency 64 --out bench/results/http-servers.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .serve import ROOT, Server, example_body, free_port, run_wrk

HEADER_TIMEOUT_S = 10       # both servers: tpserve's default TPSERVE_HEADER_TIMEOUT_S, Granian set to match


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (a multi-process server's whole tree; pages
    shared between them, such as libraries, count once per process)."""
    from .serve import tree_cpu_s

    total = 0.0
    for p in tree_cpu_s(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")), 0.0)
        except OSError:
            pass      # ended meanwhile
    return total


def start_server(kind: str, repo: Path) -> Server:
    """``python -m service`` (uvicorn with tpserve's limits) or Granian serving ``create_app``."""
    if kind == "uvicorn":
        return Server("service", repo, "digits", env={"TPSERVE_LOG_LEVEL": "warning"})
    granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or shutil.which("granian")
    if granian is None:
        raise SystemExit("granian is not installed: pip install 'granian>=2,<3'")
    port = free_port()
    cmd = [granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--log-level", "warning", "--no-ws",
           "--http1-header-read-timeout", str(HEADER_TIMEOUT_S * 1000), "service.app:create_app"]
    return Server("granian", repo, "digits", cmd=cmd, port=port,
                  env={"TPSERVE_MODEL_REPOSITORY": str(repo), "TPSERVE_LOG_LEVEL": "warning"})


def server_rss_mb(srv: Server) -> float:
    """RSS of the server's processes (Granian runs its worker as a child)."""
    children = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
    return sum(rss_mb(p) for p in [srv.proc.pid, *map(int, children)])


def flood(port: int, head: bytes, chunk: bytes, total: int) -> dict:
    """Send a request head, then ``chunk`` until ``total`` bytes or the server closes the connection:
    how much was sent and the answer's status (or "closed" without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        s.sendall(head)
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    answer = b""
    try:
        s.settimeout(30)
        while chunk_in := s.recv(65536):
            answer += chunk_in
    except OSError:
        pass
    s.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
    return {"sent_mb": round(sent / 2**20, 2), "answer": status}


def limits(srv: Server, label: str) -> dict:
    out = {}
    for name, head, chunk, total in [
        ("header_flood_32mb", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n" * 8192, 32 * 2**20),
        ("one_64mb_header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 64 * 2**20),
    ]:
        rss0 = server_rss_mb(srv)
        r = flood(srv.port, head, chunk, total)
        r["rss_growth_mb"] = round(server_rss_mb(srv) - rss0, 1)
        r["healthz_after"] = httpx.get(srv.url + "/healthz", timeout=30).status_code
        out[name] = r
        print(f"  {label:8s} {name:18s} {r}", flush=True)
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=30) for _ in range(1000)]
    lat = []
    for _ in range(20):
        t0 = time.perf_counter()
        httpx.get(srv.url + "/healthz", timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(HEADER_TIMEOUT_S + 5)
    closed = 0
    for s in idle:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    out["idle_1000"] = {"closed_by_server_after_timeout_plus_5s": closed,
                        "healthz_ms_median": round(statistics.median(lat), 2), "healthz_ms_max": round(max(lat), 2)}
    print(f"  {label:8s} idle_1000          {out['idle_1000']}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,8,64", help="wrk connection counts (comma-separated)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--servers", default="uvicorn,granian")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    import model_zoo

    repo = ROOT / "model_repository"
    body = example_body(model_zoo.get("mnist-convnet"))
    body_file = Path(tempfile.mkstemp(suffix=".json")[1])
    body_file.write_bytes(body)
    conc = [int(c) for c in args.concurrency.split(",")]
    res = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "duration_s": args.duration, "servers": {}}
    try:
        for kind in args.servers.split(","):
            srv = start_server(kind, repo)
            try:
                srv.wait(body)
                run_wrk(srv.url, body_file, max(conc), 3)          # warm-up
                points = []
                for c in conc:
                    r = run_wrk(srv.url, body_file, c, args.duration)
                    points.append({"concurrency": c, "rps": round(r["rps"], 1), "p50_ms": r["p50_us"] / 1000,
                                   "p99_ms": r["p99_us"] / 1000, "errors": r["socket_errors"] + r["non2xx"]})
                    print(f"  {kind:8s} c={c:<3d} {points[-1]['rps']:8.1f} req/s  p50 {points[-1]['p50_ms']:6.2f} ms"
                          f"  p99 {points[-1]['p99_ms']:7.2f} ms  errors {points[-1]['errors']}", flush=True)
                res["servers"][kind] = {"throughput": points, "limits": limits(srv, kind)}
            finally:
                srv.stop()
    finally:
        body_file.unlink()
    res["loadavg_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()

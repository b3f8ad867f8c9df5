"""gRPC against PyTriton: tpserve's and PyTriton's KServe v2 gRPC endpoints (``ModelInfer``), the same
digits model, the same request bytes, the same load.

Starts each server in turn on 127.0.0.1, then drives its gRPC port with h2load (:func:`bench.serve.run_grpc`:
``conc`` streams in flight, ``--grpc-streams`` per HTTP/2 connection) at each concurrency, and prints
req/s, p50/p99, errors and server CPU per request for each, and tpserve ÷ PyTriton:

* **tpserve**: ``python -m service --host 127.0.0.1 --port P --model-repository model_repository
  --log-level warning`` with ``TPSERVE_INTRA_OP_THREADS``/``INTER_OP_THREADS`` from ``--intra``/``--inter``
  (1/1: what ../shared/peers/run.py gives every server) and its gRPC port on ``TPSERVE_GRPC_PORT``;
* **PyTriton**: the peers' ``pytriton_server.py`` (Triton's own C++ server: HTTP, gRPC and the dynamic
  batcher, max batch 64, queue delay 0, one model instance; the SavedModel exported from the bundled
  model, the same TensorFlow threads) from its venv ``$PEERS_HOME/pytriton``, with ``--grpc-port`` on
  a free port and ``--unrestricted`` (so that the statistics RPC answers without PyTriton's token).

Both get the identical ModelInferRequest: ``model_name "digits"``, input ``input`` FP32 [1, 28, 28],
output ``prob``; ``--formats raw`` (``raw_input_contents``, what tritonclient sends; default) and/or
``typed`` (``contents.fp32_contents``). Before and after each server's load its answer (grpcio,
the same bytes) must equal tpserve's in-process predictor's for that input (``--atol``); failures under
load are counted from the answers' bytes and the servers' own statistics (:func:`bench.serve.run_grpc`).

Nothing of the peers directory is imported: it is only where ``pytriton_server.py`` is run from (set up
by its ``setup.sh``: ``../shared/peers/setup.sh pytriton``). Needs h2load (``apt-get install
nghttp2-client``).

    python -m bench.grpc_peers                                # c = 1, 8, 64, 10 s per point
    python -m bench.grpc_peers --rounds 3                     # medians of 3 rounds, order alternating
    python -m bench.grpc_peers --duration 3 --warmup 2        # smoke run
    python -m bench.grpc_peers --grpc-streams 8 --formats raw,typed
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from .serve import (
    GRPC_FORMATS,
    ROOT,
    Server,
    ServiceSpec,
    _commit,
    format_input,
    free_port,
    grpc_frame,
    grpc_infer,
    grpc_requests,
    load_model,
    measure_grpc,
    run_grpc,
    same_answer,
    wait_grpc,
)

MODEL = "digits"
SERVERS = ("tpserve", "pytriton")


def start_tpserve(a) -> Server:
    env = {"TPSERVE_INTRA_OP_THREADS": str(a.intra), "TPSERVE_INTER_OP_THREADS": str(a.inter),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = None
    if a.tpserve_python:
        cmd = (f"{shlex.quote(a.tpserve_python)} -m service --host 127.0.0.1 --port {{port}} "
               "--model-repository {repo} --log-level warning")
    return ServiceSpec("tpserve", env, cmd).start(ROOT / "model_repository", MODEL)


def start_pytriton(a) -> Server:
    python = a.peers_home / "pytriton" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"PyTriton's venv is missing ({python}): run {a.peers_dir / 'setup.sh'} pytriton")
    port, grpc_port = free_port(), free_port()
    cmd = [str(python), str(a.peers_dir / "pytriton_server.py"), "--host", "127.0.0.1", "--port", str(port),
           "--grpc-port", str(grpc_port), "--unrestricted"]
    env = {"PEERS_HOME": str(a.peers_home), "PEERS_SAVEDMODEL": str(a.peers_home / "digits_savedmodel"),
           "PEERS_ENGINE": "session", "PEERS_INTRA_OP_THREADS": str(a.intra), "PEERS_INTER_OP_THREADS": str(a.inter),
           "PEERS_BATCH_WAIT_MS": "", "PYTHONDONTWRITEBYTECODE": "1", "VIRTUAL_ENV": None}
    return Server("pytriton", ROOT, MODEL, cmd=cmd, port=port, env=env, grpc_port=grpc_port, new_session=True)


def bench_server(name: str, a, messages: dict[str, bytes], files: dict[str, Path], ref: dict) -> dict:
    """One server: start, check each format's answer, warm up, the points, check again, stop."""
    srv = start_tpserve(a) if name == "tpserve" else start_pytriton(a)
    out = {"server": name, "points": [], "max_abs_diff": {}}
    try:
        wait_grpc(srv, MODEL)
        for label in messages:
            got, answer_bytes = grpc_infer(srv.grpc_target, messages[label])
            out["max_abs_diff"][label] = same_answer(f"{name} {label}", got, ref, a.atol)
            run_grpc(srv, MODEL, files[label], answer_bytes, max(a.concurrency), a.warmup, a.grpc_streams)
            for c in a.concurrency:
                p = measure_grpc(srv, MODEL, files[label], answer_bytes, c, a.duration, a.grpc_streams)
                p.update(server=name, format=label, concurrency=c, loadavg_1m=os.getloadavg()[0])
                out["points"].append(p)
                print(f"  {name:8s} {label:10s} c={c:<3d} {p['ok_rps']:8.1f} req/s  p50 {p['p50_us'] / 1000:6.2f} ms  "
                      f"p99 {p['p99_us'] / 1000:6.2f} ms  errors {p['socket_errors'] + p['non2xx'] + p['grpc_failed']}"
                      f"  server CPU {1000 * (p['server_cpu_s_per_req'] or 0):.2f} ms/req "
                      f"({p['server_processes']} processes)  load {p['loadavg_1m']:.1f}", flush=True)
            out["max_abs_diff"][label + " after"] = same_answer(f"{name} {label} after the load",
                                                                grpc_infer(srv.grpc_target, messages[label])[0], ref,
                                                                a.atol)
    finally:
        srv.stop()
    return out


def table(points: list[dict], concurrency: list[int]) -> tuple[list[str], dict]:
    """Medians over rounds: one row per server and format, then tpserve ÷ PyTriton per format (lines, ratios)."""
    med: dict[tuple, dict] = {}
    for key in dict.fromkeys((p["server"], p["format"], p["concurrency"]) for p in points):
        ps = [p for p in points if (p["server"], p["format"], p["concurrency"]) == key]
        med[key] = {k: statistics.median(p[k] for p in ps) for k in ("ok_rps", "p50_us", "p99_us")}
        med[key]["errors"] = sum(p["socket_errors"] + p["non2xx"] + p["grpc_failed"] for p in ps)
        cpu = [p["server_cpu_s_per_req"] for p in ps if p["server_cpu_s_per_req"]]
        med[key]["cpu_ms"] = 1000 * statistics.median(cpu) if cpu else 0.0
    top = max(concurrency)
    lines = ["| server | format | " + " | ".join(f"c={c} req/s, p50/p99 ms" for c in concurrency)
             + f" | server CPU ms/req at c={top} | errors |", "|---|---|" + "---|" * len(concurrency) + "---:|---:|"]
    for server, fmt in dict.fromkeys((s, f) for s, f, _ in med):
        cells = [f"{m['ok_rps']:.0f}, {m['p50_us'] / 1000:.2f}/{m['p99_us'] / 1000:.2f}"
                 if (m := med.get((server, fmt, c))) else "-" for c in concurrency]
        errors = sum(med[(server, fmt, c)]["errors"] for c in concurrency if (server, fmt, c) in med)
        cpu = med.get((server, fmt, top), {}).get("cpu_ms", 0.0)
        lines.append(f"| {server} | {fmt} | " + " | ".join(cells) + f" | {cpu:.2f} | {errors} |")
    ratios, ratio_lines = {}, []
    for fmt in dict.fromkeys(f for _, f, _ in med):
        cells = []
        for c in concurrency:
            t, p = med.get(("tpserve", fmt, c)), med.get(("pytriton", fmt, c))
            if t and p and p["ok_rps"] and t["p99_us"]:
                ratios[f"{fmt}/c{c}"] = {"rps_ratio": t["ok_rps"] / p["ok_rps"], "p99_ratio": p["p99_us"] / t["p99_us"]}
                cells.append(f"c={c} {t['ok_rps'] / p['ok_rps']:.2f}× (p99 {p['p99_us'] / t['p99_us']:.2f}×)")
        if cells:
            ratio_lines.append(f"* {fmt}: " + ", ".join(cells))
    if ratio_lines:
        lines += ["", "tpserve ÷ PyTriton (req/s ratio, >1: tpserve ahead; p99 ratio = PyTriton p99 ÷ tpserve p99, "
                      ">1: tpserve lower):", "", *ratio_lines]
    return lines, ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-dir", type=Path, default=ROOT.parent / "shared" / "peers",
                    help="the peers harness directory holding pytriton_server.py (default ../shared/peers)")
    ap.add_argument("--peers-home", type=Path,
                    default=Path(os.environ.get("PEERS_HOME", Path.home() / ".cache" / "peers")),
                    help="where the peers' venvs and the exported SavedModel are ($PEERS_HOME, default ~/.cache/peers)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of tpserve,pytriton (default both)")
    ap.add_argument("--concurrency", default="1,8,64", help="streams in flight, comma-separated (default 1,8,64)")
    ap.add_argument("--grpc-streams", type=int, default=1,
                    help="streams per HTTP/2 connection (h2load -m; default 1: one connection per stream, as wrk's)")
    ap.add_argument("--formats", default="raw", help="comma-separated, of raw,typed (default raw)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point (default 10)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per server and format (default 3)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds (medians in the table; the order of the servers "
                                                          "is reversed every other round)")
    ap.add_argument("--intra", type=int, default=1, help="TensorFlow intra-op threads of both servers (default 1)")
    ap.add_argument("--inter", type=int, default=1, help="TensorFlow inter-op threads of both servers (default 1)")
    ap.add_argument("--tpserve-python", default=None,
                    help="the Python that runs tpserve (default this one; e.g. ~/.cache/peers/tpserve/bin/python, "
                         "the peers harness's)")
    ap.add_argument("--atol", type=float, default=1e-5, help="answers' tolerance against the predictor (default 1e-5)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/grpc-peers-<date>.json)")
    a = ap.parse_args(argv)
    a.concurrency = [int(c) for c in a.concurrency.split(",")]
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    formats = [f"gRPC {f.strip()}" for f in a.formats.split(",") if f.strip()]
    if not set(servers) <= set(SERVERS) or not servers:
        raise SystemExit(f"--servers: expected some of {', '.join(SERVERS)}, got {a.servers!r}")
    if not set(formats) <= set(GRPC_FORMATS) or not formats:
        raise SystemExit(f"--formats: expected raw and/or typed, got {a.formats!r}")
    if "pytriton" in servers and not (a.peers_dir / "pytriton_server.py").is_file():
        raise SystemExit(f"no pytriton_server.py in {a.peers_dir}: pass --peers-dir (the peers harness directory)")
    if shutil.which("h2load") is None:
        raise SystemExit("bench/grpc_peers.py needs h2load: sudo apt-get install nghttp2-client")

    # the reference: tpserve's own predictor on the same input (PyTriton runs the SavedModel exported from it)
    m = load_model(ROOT / "model_repository", MODEL, 64, {"TPSERVE_INTRA_OP_THREADS": str(a.intra),
                                                          "TPSERVE_INTER_OP_THREADS": str(a.inter)})
    try:
        spec = m.inputs[0]
        x = format_input(spec)
        ref = {"prob": m.run_batch(0, {spec.name: x})["prob"]}
    finally:
        m.close()
    messages = {k: v for k, v in grpc_requests(x, spec.name, MODEL).items() if k in formats}
    results = []
    with tempfile.TemporaryDirectory(prefix="tpserve-grpc-peers-") as tmp:
        files = {}
        for i, (label, msg) in enumerate(messages.items()):
            files[label] = Path(tmp) / f"body-{i}.bin"
            files[label].write_bytes(grpc_frame(msg))
        print(f"gRPC peers: {', '.join(servers)}; {', '.join(messages)}; c = {a.concurrency}, {a.grpc_streams} "
              f"stream(s) per connection, {a.duration:g} s per point, {a.rounds} round(s); TensorFlow threads "
              f"intra {a.intra} inter {a.inter}; load {os.getloadavg()[0]:.1f}", flush=True)
        for rnd in range(a.rounds):
            for name in (servers if rnd % 2 == 0 else servers[::-1]):
                r = bench_server(name, a, messages, files, ref)
                r["round"] = rnd
                results.append(r)
    lines, ratios = table([p for r in results for p in r["points"]], a.concurrency)
    print()
    print("\n".join(lines))
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_end": os.getloadavg(),
            "argv": sys.argv[1:] if argv is None else list(argv), "commit": _commit(),
            "body_bytes": {k: len(grpc_frame(v)) for k, v in messages.items()}, "intra_op": a.intra,
            "inter_op": a.inter, "grpc_streams": a.grpc_streams, "duration_s": a.duration, "rounds": a.rounds}
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"grpc-peers-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=1, default=str))
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()

"""Serving benchmark: the service vs a naive server vs the HTTP floor vs the in-process engine.

Drives each server on 127.0.0.1 with ``wrk`` (closed loop, N connections) and prints throughput
and p50/p99 latency at each concurrency:

  (a) service  — ``python -m service`` (dynamic batching)
  (b) naive    — bench/baselines.py: the same predictor, once per request, no batching
  (c) floor    — bench/baselines.py: parses/validates the same request, answers without a model
  (d) engine   — the in-process predictor at the mean batch size the service formed at that load

wrk comes from Debian's packages: ``sudo apt-get install wrk``.

    python -m bench.serve                      # digits (bundled) and CIFAR ResNet-20 (random weights)
    python -m bench.serve --model digits --concurrency 1,8,64 --duration 5
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "post.lua"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_weights_repo(tmp: Path, name: str, architecture: str, options: dict, batching: dict) -> Path:
    """A model repository whose version 1 holds freshly initialised (random) weights."""
    import tensorflow as tf

    import layers
    import model_zoo

    zoo = model_zoo.get(architecture, **options)
    g = tf.Graph()
    with g.as_default():
        placeholders = zoo.model.create_placeholders()
        with layers.PredictTowerContext(""):
            zoo.model.build_graph(*placeholders)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            (tmp / name / "1").mkdir(parents=True)
            layers.dump_model_params(sess, str(tmp / name / "1" / "model.npz"))
    (tmp / name / "config.json").write_text(json.dumps(
        {"architecture": architecture, "options": options, "batching": batching}))
    return tmp


def example_body(zoo_model, rows: int = 1) -> bytes:
    spec = zoo_model.inputs[0]
    rng = np.random.default_rng(0)
    lo, hi = spec.value_range
    x = rng.uniform(lo, hi, size=(rows, *spec.shape))
    x = x.round().astype(spec.dtype) if np.dtype(spec.dtype).kind in "iu" else x.astype(np.float32)
    return json.dumps({"inputs": {spec.name: np.round(x, 4).tolist()}}).encode()


class Server:
    """A server subprocess on 127.0.0.1: ``python -m service``, a bench/baselines.py server, or, with
    ``cmd`` (and the ``port`` it listens on), any other command."""

    def __init__(self, kind: str, repo: Path, model: str, cmd: list[str] | None = None, port: int | None = None,
                 env: dict | None = None):
        self.kind, self.port = kind, port or free_port()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        if cmd is None and kind == "service":
            cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port),
                   "--model-repository", str(repo), "--log-level", "warning"]
        elif cmd is None:
            cmd = [sys.executable, "-m", "bench.baselines", kind, "--model-repository", str(repo), "--model", model,
                   "--port", str(self.port)]
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, body: bytes, timeout_s=300):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; log: {Path(self.log.name).read_text()[-2000:]}")
            try:
                r = httpx.post(self.url + "/predict", content=body, headers={"content-type": "application/json"},
                               timeout=30)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.kind} server not ready after {timeout_s} s")

    def batch_stats(self):
        text = httpx.get(self.url + "/metrics", timeout=10).text
        s = re.search(r"^tpserve_batch_size_sum\{[^}]*\} ([0-9.e+]+)", text, re.M)
        c = re.search(r"^tpserve_batch_size_count\{[^}]*\} ([0-9.e+]+)", text, re.M)
        return (float(s.group(1)), float(c.group(1))) if s and c else (0.0, 0.0)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)


def run_wrk(url: str, body_file: Path, conc: int, duration_s: float, path: str = "/predict",
            headers: dict | None = None) -> dict:
    cmd = ["wrk", f"-t{min(conc, 2)}", f"-c{conc}", f"-d{max(1, round(duration_s))}s", "--timeout", "30s",
           "-s", str(LUA), url + path]
    env = dict(os.environ, BODY_FILE=str(body_file), **(headers or {}))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
    out = proc.stdout
    m = re.search(r"WRKJSON (\{.*\})", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    d = json.loads(m.group(1))
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    return d


def engine_throughput(repo: Path, model: str, batch_sizes, seconds=2.0) -> dict[int, float]:
    """Rows/s of the in-process predictor (same code the service runs) at each batch size."""
    from service.model import ModelConfig
    from service.repository import ModelRepository
    from service.settings import Settings

    repository = ModelRepository(Settings(model_repository=repo, warmup=False))
    cfg = next(c for c in repository.scan() if isinstance(c, ModelConfig) and c.name == model)
    m = repository.load(cfg, 64)
    out = {}
    try:
        for bs in sorted(set(batch_sizes)):
            feeds = {s.name: m._filler(s, bs) for s in m.inputs}
            m.run_batch(0, feeds)
            n, t0 = 0, time.monotonic()
            while time.monotonic() - t0 < seconds:
                m.run_batch(0, feeds)
                n += 1
            out[bs] = n * bs / (time.monotonic() - t0)
    finally:
        m.close()
    return out


def bench_model(label, repo, model, body, concurrency, duration_s, warmup_s):
    results = {"model": label, "points": []}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(body)
        body_file = Path(f.name)
    try:
        for kind in ("service", "naive", "floor"):
            srv = Server(kind, repo, model)
            try:
                srv.wait(body)
                run_wrk(srv.url, body_file, max(concurrency), warmup_s)
                for c in concurrency:
                    before = srv.batch_stats() if kind == "service" else None
                    r = run_wrk(srv.url, body_file, c, duration_s)
                    if before is not None:
                        after = srv.batch_stats()
                        n = after[1] - before[1]
                        r["mean_batch"] = (after[0] - before[0]) / n if n else None
                    r.update(server=kind, concurrency=c)
                    results["points"].append(r)
                    print(f"  {label:10s} {kind:8s} c={c:<4d} {r['rps']:9.1f} req/s  p50 {r['p50_us'] / 1000:7.2f} ms"
                          f"  p99 {r['p99_us'] / 1000:7.2f} ms  errors {r['socket_errors'] + r['non2xx']}"
                          + (f"  mean batch {r['mean_batch']:.1f}" if r.get("mean_batch") else ""), flush=True)
            finally:
                srv.stop()
        sizes = [max(1, round(p["mean_batch"])) for p in results["points"] if p.get("mean_batch")]
        eng = engine_throughput(repo, model, sizes or [1])
        for p in [p for p in results["points"] if p["server"] == "service"]:
            bs = max(1, round(p.get("mean_batch") or 1))
            results["points"].append({"server": "engine", "concurrency": p["concurrency"], "batch": bs,
                                      "rps": eng[bs], "p50_us": None, "p99_us": None})
            print(f"  {label:10s} engine   c={p['concurrency']:<4d} {eng[bs]:9.1f} rows/s at batch {bs}", flush=True)
        results["engine_best_rps"] = max(eng.values())
    finally:
        body_file.unlink()
    return results


def transport_bodies(zoo) -> dict[str, tuple[str, bytes, dict]]:
    """The same single 224x224x3 float32 image as /predict JSON, v2 JSON and v2 binary."""
    spec = zoo.inputs[0]
    x = np.random.default_rng(0).uniform(0, 255, size=(1, *spec.shape)).astype(np.float32)
    pj = json.dumps({"inputs": {spec.name: np.round(x, 3).tolist()}}).encode()
    v2j = json.dumps({"inputs": [{"name": spec.name, "shape": list(x.shape), "datatype": "FP32",
                                  "data": np.round(x, 3).reshape(-1).tolist()}]}).encode()
    head = json.dumps({"inputs": [{"name": spec.name, "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "prob", "parameters": {"binary_data": True}}]}).encode()
    v2b = head + x.tobytes()
    return {"predict JSON": ("/predict", pj, {}),
            "v2 JSON": ("/v2/models/{name}/infer", v2j, {}),
            "v2 binary": ("/v2/models/{name}/infer", v2b, {"CONTENT_TYPE": "application/octet-stream",
                                                               "HEADER_LEN": str(len(head))})}


def bench_transport(tmp: Path, conc: int, duration_s: float, warmup_s: float) -> dict:
    """ImageNet ResNet-18 (random weights, float32 input): JSON /predict vs v2 JSON vs v2 binary."""
    import model_zoo

    options = {"depth": 18, "input_dtype": "float32"}
    repo = random_weights_repo(tmp, "resnet18", "imagenet-resnet", options, {"max_batch_size": 16})
    zoo = model_zoo.get("imagenet-resnet", **options)
    out = {"model": "resnet18-transport", "concurrency": conc, "points": []}
    srv = Server("service", repo, "resnet18")
    try:
        bodies = transport_bodies(zoo)
        srv.wait(bodies["predict JSON"][1])
        for label, (path, body, headers) in bodies.items():
            path = path.format(name="resnet18")
            with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
                f.write(body)
            try:
                run_wrk(srv.url, Path(f.name), conc, warmup_s, path, headers)
                r = run_wrk(srv.url, Path(f.name), conc, duration_s, path, headers)
            finally:
                os.unlink(f.name)
            r.update(transport=label, body_bytes=len(body))
            out["points"].append(r)
            print(f"  resnet18   {label:13s} c={conc:<3d} body {len(body) / 1e6:5.2f} MB  {r['rps']:7.1f} req/s  "
                  f"p50 {r['p50_us'] / 1000:8.1f} ms  p99 {r['p99_us'] / 1000:8.1f} ms  "
                  f"errors {r['socket_errors'] + r['non2xx']}", flush=True)
    finally:
        srv.stop()
    return out


def summarise(res) -> list[str]:
    if "transport" in res["points"][0]:
        lines = [f"### {res['model']} (c={res['concurrency']})", "", "| transport | body MB | req/s | p50 ms | p99 ms |",
                 "|---|---|---|---|---|"]
        for p in res["points"]:
            lines.append(f"| {p['transport']} | {p['body_bytes'] / 1e6:.2f} | {p['rps']:.1f} | "
                         f"{p['p50_us'] / 1000:.1f} | {p['p99_us'] / 1000:.1f} |")
        return lines
    pts = {(p["server"], p["concurrency"]): p for p in res["points"]}
    cs = sorted({p["concurrency"] for p in res["points"]})
    lines = [f"### {res['model']}", "", "| server | " + " | ".join(f"c={c} req/s, p50/p99 ms" for c in cs) + " |",
             "|---|" + "---|" * len(cs)]
    for kind in ("service", "naive", "floor", "engine"):
        cells = []
        for c in cs:
            p = pts.get((kind, c))
            if p is None:
                cells.append("-")
            elif p["p50_us"] is None:
                cells.append(f"{p['rps']:.0f} rows/s (batch {p['batch']})")
            else:
                cells.append(f"{p['rps']:.0f}, {p['p50_us'] / 1000:.2f}/{p['p99_us'] / 1000:.2f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["digits", "cifar-resnet20", "transport", "all"], default="all",
                    help="digits / cifar-resnet20: service vs naive vs floor vs engine; transport: ImageNet "
                         "ResNet-18 (224x224x3 float32) through JSON /predict, v2 JSON and v2 binary at c=16")
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated connection counts (default 1,8,64)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each server's points")
    ap.add_argument("--out", default=None, help="write results JSON here (default bench/results/serve-<date>.json)")
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: sudo apt-get install wrk")
    conc = [int(c) for c in a.concurrency.split(",")]
    import model_zoo

    all_results = []
    with tempfile.TemporaryDirectory(prefix="tpserve-bench-") as tmp:
        if a.model in ("digits", "all"):
            print("digits (bundled mnist-convnet)", flush=True)
            zoo = model_zoo.get("mnist-convnet")
            all_results.append(bench_model("digits", ROOT / "model_repository", "digits", example_body(zoo), conc,
                                           a.duration, a.warmup))
        if a.model in ("cifar-resnet20", "all"):
            print("CIFAR ResNet-20 (random weights)", flush=True)
            repo = random_weights_repo(Path(tmp), "resnet20", "cifar10-resnet", {"depth": 20},
                                       {"max_batch_size": 64})
            zoo = model_zoo.get("cifar10-resnet", depth=20)
            all_results.append(bench_model("resnet20", repo, "resnet20", example_body(zoo), conc, a.duration,
                                           a.warmup))
        if a.model in ("transport", "all"):
            print("transport cost: ImageNet ResNet-18 (random weights, float32 input)", flush=True)
            all_results.append(bench_transport(Path(tmp), 16, a.duration, a.warmup))
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version()}
    print()
    for res in all_results:
        print("\n".join(summarise(res)))
        print()
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"serve-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": all_results}, indent=1))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()

"""Serving benchmark: the service vs a naive server vs the HTTP floor vs the in-process engine.

Drives each server on 127.0.0.1 with ``wrk`` (closed loop, N connections) and prints throughput
and p50/p99 latency at each concurrency:

  (a) service  — ``python -m service`` (dynamic batching)
  (b) naive    — bench/baselines.py: the same predictor, once per request, no batching
  (c) floor    — bench/baselines.py: parses/validates the same request, answers without a model
  (d) engine   — the in-process predictor at the mean batch size the service formed at that load

``--model limits``: this machine's limit for each request format (CIFAR ResNet-20, one row per
request, c=64) = cores / (HTTP-floor CPU s per request + engine CPU s per row), both measured in the
same run, against the service's measured req/s (see :func:`bench_limits`).

``--workers 0,1,2,default`` runs every service point once per ``TPSERVE_WORKERS`` setting ("default":
as in this environment, normally unset; 0: embedded); ``--env K=V`` and ``--service-cmd`` change how the
service is started.

wrk comes from Debian's packages: ``sudo apt-get install wrk``.

    python -m bench.serve                      # digits (bundled), CIFAR ResNet-20, transport, limits
    python -m bench.serve --model digits --concurrency 1,8,64 --duration 5
    python -m bench.serve --model limits --workers 1,2,default          # a few seconds per point
    python -m bench.serve --model limits --duration 20 --warmup 5       # longer points
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import io
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from fastapi import Request  # at module level: the HTTP floor route's (postponed) annotation must resolve

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


# --------------------------------------------------------------------------------------------- CPU time
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: utime + stime + reaped children's) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2:].split()     # fields after "pid (comm) ": state, ppid, ...
        out[int(d)] = (int(rest[1]), sum(int(v) for v in rest[11:15]) / _TICK)
    return out


def tree_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds so far of ``root`` and every process below it (/proc/<pid>/stat), by pid."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out[pid] = table[pid][1]
            todo += children.get(pid, [])
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree used between two :func:`tree_cpu_s` snapshots (processes that appeared
    count from zero; those that ended in between are lost, so keep server trees stable while measuring)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def measure_wrk(srv: Server, body_file: Path, conc: int, duration_s: float, path: str = "/predict",
                headers: dict | None = None, batch_stats: bool = False) -> dict:
    """:func:`run_wrk` plus the CPU seconds per answered request of the server's process tree and of
    wrk itself, and (``batch_stats``) the service's mean executed batch over the run."""
    before = srv.batch_stats() if batch_stats else None
    cpu0, ru0 = tree_cpu_s(srv.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run_wrk(srv.url, body_file, conc, duration_s, path, headers)
    cpu1, ru1 = tree_cpu_s(srv.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = r["requests"] - r["non2xx"]
    r["ok_rps"] = ok / (r["duration_us"] / 1e6)
    r["server_cpu_s"] = cpu_delta(cpu0, cpu1)
    r["server_processes"] = len(cpu1)
    r["server_cpu_s_per_req"] = r["server_cpu_s"] / ok if ok else None
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)   # wrk is the only child reaped
    r["client_cpu_s_per_req"] = wrk_cpu / ok if ok else None
    if before is not None:
        after = srv.batch_stats()
        n = after[1] - before[1]
        r["mean_batch"] = (after[0] - before[0]) / n if n else None
    return r


# --------------------------------------------------------------------------------------------- engine
@contextlib.contextmanager
def _environ(env: dict | None):
    """``os.environ`` updated with ``env`` inside the block (Settings() then reads the service's TPSERVE_*)."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_model(repo: Path, model: str, max_batch_size: int = 64, env: dict | None = None, **settings):
    """The service's own model object (``ModelRepository.load``: same replicas, devices and TensorFlow
    threads as ``python -m service`` with the environment ``env``), not warmed up."""
    from service.model import ModelConfig
    from service.repository import ModelRepository
    from service.settings import Settings

    with _environ(env):
        repository = ModelRepository(Settings(model_repository=repo, warmup=False, **settings))
    cfg = next(c for c in repository.scan() if isinstance(c, ModelConfig) and c.name == model)
    return repository.load(cfg, max_batch_size)


def engine_cost(m, batch_sizes, seconds: float = 2.0, replicas=None, min_calls: int = 2, seed: int = 0) -> dict:
    """``m.run_batch`` at each batch size (``m``: a loaded model, see :func:`load_model`): rows/s,
    CPU seconds per row (this process's CPU time, i.e. every TensorFlow thread) and per-call latency.
    With several ``replicas`` (default: all of ``m.devices``) each is driven from its own thread at
    once, as the service does, and rows/s is their sum. Inputs are random within the input's range."""
    replicas = list(range(len(m.devices))) if replicas is None else list(replicas)
    rng = np.random.default_rng(seed)
    out = {}
    for bs in sorted(set(batch_sizes)):
        feeds = {}
        for s in m.inputs:
            lo, hi = s.value_range or (0.0, 1.0)
            x = rng.uniform(lo, hi, (bs, *[d or 1 for d in s.shape]))
            feeds[s.name] = (x.round() if np.dtype(s.dtype).kind in "iub" else x).astype(s.dtype)
        for r in replicas:                     # first calls allocate memory and pick kernels
            m.run_batch(r, feeds)
            m.run_batch(r, feeds)
        wall, cpu, lat = _drive(m, replicas, feeds, seconds, min_calls)
        calls = [x for v in lat for x in v]
        rows = len(calls) * bs
        out[bs] = {"batch": bs, "replicas": len(replicas), "calls": len(calls), "rows_per_s": rows / wall,
                   "cpu_s_per_row": cpu / rows, "p50_ms": 1000 * float(np.percentile(calls, 50)),
                   "p99_ms": 1000 * float(np.percentile(calls, 99))}
    return out


def _drive(m, replicas: list[int], feeds: dict, seconds: float, min_calls: int):
    """Call ``m.run_batch`` on every replica at once (a thread each) for ``seconds`` (and at least
    ``min_calls`` times each): (wall seconds, this process's CPU seconds, per-call seconds per replica)."""
    lat: list[list[float]] = [[] for _ in replicas]
    end = time.perf_counter() + seconds

    def drive(i: int):
        r = replicas[i]
        while time.perf_counter() < end or len(lat[i]) < min_calls:
            t = time.perf_counter()
            m.run_batch(r, feeds)
            lat[i].append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    if len(replicas) == 1:
        drive(0)
    else:
        threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(replicas))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return time.perf_counter() - t0, time.process_time() - cpu0, lat


def engine_throughput(repo: Path, model: str, batch_sizes, seconds=2.0, env: dict | None = None) -> dict[int, float]:
    """Rows/s of the in-process predictor (same code the service runs) at each batch size."""
    m = load_model(repo, model, 64, env)
    try:
        return {bs: v["rows_per_s"] for bs, v in engine_cost(m, batch_sizes, seconds, replicas=[0]).items()}
    finally:
        m.close()


# --------------------------------------------------------------------------------------------- services
@dataclass
class ServiceSpec:
    """How to start ``python -m service`` for one labelled setting (``--workers``, ``--env``, ``--service-cmd``)."""

    label: str = "default"
    env: dict = field(default_factory=dict)
    cmd: str | None = None     # a template: {python} {port} {repo}; None: python -m service ...

    def start(self, repo: Path, model: str) -> Server:
        port = free_port()
        cmd = None
        if self.cmd:
            cmd = shlex.split(self.cmd.format(python=shlex.quote(sys.executable), port=port,
                                              repo=shlex.quote(str(repo))))
        return Server("service", repo, model, cmd=cmd, port=port, env=self.env)


def service_specs(workers: str, env: list[str] | None = None, cmd: str | None = None) -> list[ServiceSpec]:
    """``--workers 0,1,2,default`` -> one spec per setting: TPSERVE_WORKERS=N, or "default": as this
    process's environment has it (normally unset: the service's own choice), each with the ``--env K=V`` pairs."""
    base = {}
    for kv in env or []:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise SystemExit(f"--env expects KEY=VALUE, got {kv!r}")
        base[k] = v
    specs = []
    for w in (x.strip() for x in workers.split(",") if x.strip()):
        if w == "default":
            specs.append(ServiceSpec("default", dict(base), cmd))
        elif w.isdigit():
            specs.append(ServiceSpec(w, {**base, "TPSERVE_WORKERS": w}, cmd))
        else:
            raise SystemExit(f"--workers: expected integers (0: embedded, one process) or 'default', got {w!r}")
    return specs or [ServiceSpec("default", dict(base), cmd)]


def _service_kind(spec: ServiceSpec, specs: list[ServiceSpec]) -> str:
    return "service" if len(specs) == 1 and spec.label == "default" else f"service w={spec.label}"


def bench_model(label, repo, model, body, concurrency, duration_s, warmup_s, specs: list[ServiceSpec] | None = None):
    specs = specs or [ServiceSpec()]
    results = {"model": label, "points": []}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(body)
        body_file = Path(f.name)
    try:
        runs = [(_service_kind(s, specs), s) for s in specs] + [("naive", None), ("floor", None)]
        for kind, spec in runs:
            srv = spec.start(repo, model) if spec is not None else Server(kind, repo, model)
            try:
                srv.wait(body)
                run_wrk(srv.url, body_file, max(concurrency), warmup_s)
                for c in concurrency:
                    r = measure_wrk(srv, body_file, c, duration_s, batch_stats=spec is not None)
                    r.update(server=kind, concurrency=c, workers=spec.label if spec else None)
                    results["points"].append(r)
                    print(f"  {label:10s} {kind:8s} c={c:<4d} {r['rps']:9.1f} req/s  p50 {r['p50_us'] / 1000:7.2f} ms"
                          f"  p99 {r['p99_us'] / 1000:7.2f} ms  errors {r['socket_errors'] + r['non2xx']}"
                          + (f"  mean batch {r['mean_batch']:.1f}" if r.get("mean_batch") else "")
                          + (f"  server CPU {1000 * r['server_cpu_s_per_req']:.2f} ms/req"
                             if r.get("server_cpu_s_per_req") else ""), flush=True)
            finally:
                srv.stop()
        sizes = [max(1, round(p["mean_batch"])) for p in results["points"] if p.get("mean_batch")]
        eng = engine_throughput(repo, model, sizes or [1], env=specs[0].env)
        for p in [p for p in results["points"] if p["server"].startswith("service")]:
            bs = max(1, round(p.get("mean_batch") or 1))
            kind = "engine" if len(specs) == 1 else f"engine ({p['server']})"   # at that setting's batch
            results["points"].append({"server": kind, "concurrency": p["concurrency"], "batch": bs,
                                      "rps": eng[bs], "p50_us": None, "p99_us": None})
            print(f"  {label:10s} {kind:8s} c={p['concurrency']:<4d} {eng[bs]:9.1f} rows/s at batch {bs}", flush=True)
        results["engine_best_rps"] = max(eng.values())
    finally:
        body_file.unlink()
    return results


# --------------------------------------------------------------------------------------------- formats
FORMATS = ("JSON /predict", ".npy /predict", "v2 JSON", "v2 binary")
# ratio of measured req/s to this machine's limit that each format should reach (bench_limits)
TARGETS = {"JSON /predict": 0.60, ".npy /predict": 0.85, "v2 JSON": 0.60, "v2 binary": 0.85}
_V2_TYPES = {"float32": "FP32", "float64": "FP64", "uint8": "UINT8", "int32": "INT32", "int64": "INT64",
             "float16": "FP16", "int8": "INT8", "bool": "BOOL", "uint16": "UINT16", "int16": "INT16"}


def format_bodies(spec, model: str, output: str = "prob", rows: int = 1, seed: int = 0) -> dict[str, dict]:
    """The same ``rows`` random inputs (``spec``: a zoo ``InputSpec`` or the service's ``TensorSpec``)
    in each request format of :data:`FORMATS`, asking for the one output ``output``. Each value:
    ``path``, ``body`` (bytes), ``content_type``, ``headers`` (HTTP) and ``wrk_env`` (for post.lua)."""
    dtype = np.dtype(spec.dtype)
    lo, hi = spec.value_range or (0.0, 1.0)
    margin = 0.01 * (hi - lo)       # rounded values stay inside the declared range (the service checks it)
    x = np.random.default_rng(seed).uniform(lo + margin, hi - margin, size=(rows, *spec.shape))
    x = x.round().astype(dtype) if dtype.kind in "iub" else np.round(x, 3).astype(dtype)
    listed = x.tolist() if dtype.kind in "iub" else np.round(x.astype(np.float64), 3).tolist()
    npy = io.BytesIO()
    np.save(npy, x, allow_pickle=False)
    datatype = _V2_TYPES[dtype.name]
    v2 = f"/v2/models/{model}/infer"
    head = json.dumps({"inputs": [{"name": spec.name, "shape": list(x.shape), "datatype": datatype,
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": output, "parameters": {"binary_data": True}}]}).encode()
    bodies = {
        "JSON /predict": ("/predict", json.dumps({"inputs": {spec.name: listed}, "outputs": [output]}).encode(),
                          "application/json", {}),
        ".npy /predict": (f"/predict?output={output}", npy.getvalue(), "application/x-npy", {}),
        "v2 JSON": (v2, json.dumps({"inputs": [{"name": spec.name, "shape": list(x.shape), "datatype": datatype,
                                                "data": np.asarray(listed).reshape(-1).tolist()}],
                                    "outputs": [{"name": output}]}).encode(), "application/json", {}),
        "v2 binary": (v2, head + x.tobytes(), "application/octet-stream",
                      {"Inference-Header-Content-Length": str(len(head))}),
    }
    out = {}
    for label, (path, body, ctype, headers) in bodies.items():
        wrk_env = {"CONTENT_TYPE": ctype}
        if "Inference-Header-Content-Length" in headers:
            wrk_env["HEADER_LEN"] = headers["Inference-Header-Content-Length"]
        out[label] = {"path": path, "body": body, "content_type": ctype,
                      "headers": {"content-type": ctype, **headers}, "wrk_env": wrk_env}
    return out


def check_answer(url: str, fmt: dict) -> httpx.Response:
    """POST one request of a format; raise unless it is answered 200."""
    r = httpx.post(url + fmt["path"], content=fmt["body"], headers=fmt["headers"], timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"POST {fmt['path']} ({fmt['content_type']}) -> {r.status_code}: {r.text[:300]}")
    return r


# --------------------------------------------------------------------------------------------- HTTP floor
def http_floor_app(responses: list[dict]):
    """A FastAPI app whose routes (``POST /predict``, ``POST /v2/models/{name}/infer``) read the body
    and return a fixed response: the one recorded from the service for the same path and content type
    (``responses``: path, content_type, body (base64), media_type, headers). Its CPU time per request
    is the HTTP floor of :func:`bench_limits`: what FastAPI + uvicorn cost before any parsing."""
    from fastapi import FastAPI, Response

    table = {(r["path"].split("?")[0], r["content_type"]): (base64.b64decode(r["body"]), r["media_type"],
                                                            r["headers"]) for r in responses}
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def answer(request: Request):
        await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body, media, headers = table[(request.url.path, ctype)]
        return Response(body, media_type=media, headers=headers)

    app.add_api_route("/predict", answer, methods=["POST"])
    app.add_api_route("/v2/models/{name}/infer", answer, methods=["POST"])
    return app


def run_http_floor(responses_file: str, port: int):
    """``python -m bench.serve --http-floor FILE --port P``: :func:`http_floor_app` under uvicorn with
    the service's own uvicorn settings (``service.httpserver.uvicorn_limits``)."""
    import uvicorn

    from service.httpserver import uvicorn_limits
    from service.settings import Settings

    app = http_floor_app(json.loads(Path(responses_file).read_text()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                **uvicorn_limits(Settings()))


def start_http_floor(responses: list[dict], tmp: Path) -> Server:
    f = tmp / "http-floor-responses.json"
    f.write_text(json.dumps(responses))
    port = free_port()
    return Server("http-floor", tmp, "", port=port,
                  cmd=[sys.executable, "-m", "bench.serve", "--http-floor", str(f), "--port", str(port)])


def _recorded(fmt: dict, r: httpx.Response) -> dict:
    keep = {k: v for k, v in r.headers.items() if k.lower() == "inference-header-content-length"}
    return {"path": fmt["path"], "content_type": fmt["content_type"], "body": base64.b64encode(r.content).decode(),
            "media_type": r.headers.get("content-type", "application/json"), "headers": keep}


# --------------------------------------------------------------------------------------------- limits
def bench_limits(tmp: Path, specs: list[ServiceSpec], conc: int, duration_s: float, warmup_s: float,
                 engine_s: float = 3.0) -> dict:
    """CIFAR ResNet-20 (random weights, one 32x32x3 float32 row per request) at ``conc`` connections,
    per request format and per service setting: measured req/s against this machine's limit,

        limit = cores / (HTTP-floor CPU s per request + engine CPU s per row),

    * HTTP floor: the CPU time (server process tree, /proc/<pid>/stat) per request of a FastAPI +
      uvicorn route that reads that format's body and returns the service's recorded answer
      (:func:`http_floor_app`), over a wrk run like the service's;
    * engine: the CPU time per row of ``run_batch`` in this process, same replicas and TensorFlow
      threads as the service, at the mean batch the service executed for that format and setting.

    The client (wrk) runs on the same cores and is not in the formula: its CPU per request is recorded
    (``client_cpu_s_per_req``) so the share it took is visible."""
    import model_zoo
    from service.repository import available_cpus

    tmp = tmp / "limits"
    tmp.mkdir(parents=True, exist_ok=True)
    repo = random_weights_repo(tmp, "resnet20", "cifar10-resnet", {"depth": 20}, {"max_batch_size": 64})
    zoo = model_zoo.get("cifar10-resnet", depth=20)
    fmts = format_bodies(zoo.inputs[0], "resnet20")
    for label, f in fmts.items():
        f["file"] = tmp / f"body-{FORMATS.index(label)}.bin"
        f["file"].write_bytes(f["body"])
    cores = available_cpus()
    out = {"model": "resnet20-limits", "concurrency": conc, "cores": cores, "duration_s": duration_s,
           "body_bytes": {k: len(f["body"]) for k, f in fmts.items()}, "points": [], "floor": {}, "engine": {}}
    recorded: dict[str, dict] = {}
    for spec in specs:
        srv = spec.start(repo, "resnet20")
        try:
            srv.wait(fmts["JSON /predict"]["body"])
            for label, f in fmts.items():
                r = check_answer(srv.url, f)
                recorded.setdefault(label, _recorded(f, r))
                run_wrk(srv.url, f["file"], conc, warmup_s, f["path"], f["wrk_env"])
                p = measure_wrk(srv, f["file"], conc, duration_s, f["path"], f["wrk_env"], batch_stats=True)
                p.update(workers=spec.label, env=spec.env, format=label, concurrency=conc,
                         loadavg_1m=os.getloadavg()[0])
                out["points"].append(p)
                print(f"  resnet20 service w={spec.label:<7s} {label:13s} c={conc} {p['ok_rps']:8.1f} req/s  "
                      f"p99 {p['p99_us'] / 1000:7.1f} ms  errors {p['socket_errors'] + p['non2xx']}  "
                      f"mean batch {p['mean_batch'] or 0:.1f}  server CPU "
                      f"{1000 * (p['server_cpu_s_per_req'] or 0):.2f} ms/req ({p['server_processes']} processes)",
                      flush=True)
        finally:
            srv.stop()
    floor = start_http_floor(list(recorded.values()), tmp)
    try:
        floor.wait(fmts["JSON /predict"]["body"], timeout_s=60)
        for label, f in fmts.items():
            run_wrk(floor.url, f["file"], conc, warmup_s, f["path"], f["wrk_env"])
            p = measure_wrk(floor, f["file"], conc, duration_s, f["path"], f["wrk_env"])
            out["floor"][label] = p
            print(f"  HTTP floor {label:13s} c={conc} {p['ok_rps']:8.1f} req/s  server CPU "
                  f"{1000 * (p['server_cpu_s_per_req'] or 0):.3f} ms/req", flush=True)
    finally:
        floor.stop()
    batch_of = {}
    for p in out["points"]:
        batch_of[(p["workers"], p["format"])] = max(1, round(p["mean_batch"])) if p.get("mean_batch") else min(conc, 64)
    m = load_model(repo, "resnet20", 64, specs[0].env)
    try:
        eng = engine_cost(m, set(batch_of.values()), engine_s, replicas=[0])
    finally:
        m.close()
    for bs, e in eng.items():
        out["engine"][str(bs)] = e
        print(f"  engine batch {bs:3d}: {e['rows_per_s']:8.1f} rows/s  CPU {1000 * e['cpu_s_per_row']:.3f} ms/row",
              flush=True)
    for p in out["points"]:
        bs = batch_of[(p["workers"], p["format"])]
        floor_s = out["floor"][p["format"]]["server_cpu_s_per_req"] or 0.0
        engine_row_s = eng[bs]["cpu_s_per_row"]
        p["limit"] = {"floor_cpu_s_per_req": floor_s, "engine_batch": bs, "engine_cpu_s_per_row": engine_row_s,
                      "cores": cores, "rps": cores / (floor_s + engine_row_s)}
        p["ratio"] = p["ok_rps"] / p["limit"]["rps"]
        p["target"] = TARGETS[p["format"]]
    return out


def limits_table(res: dict) -> list[str]:
    lines = [f"### {res['model']}: measured vs this machine's limit (c={res['concurrency']}, {res['cores']} cores, "
             f"{res['duration_s']:g} s per point)", "",
             "limit = cores / (HTTP-floor CPU per request + engine CPU per row at the service's mean batch)", ""]
    for w in dict.fromkeys(p["workers"] for p in res["points"]):
        lines += [f"TPSERVE_WORKERS={w}" if w != "default" else "TPSERVE_WORKERS not set by the bench (default)", "",
                  "| format | body B | measured req/s | p99 ms | mean batch | server CPU ms/req | floor CPU ms/req "
                  "| engine CPU ms/row | limit req/s | ratio | target |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for p in (p for p in res["points"] if p["workers"] == w):
            lim = p["limit"]
            ok = "ok" if p["ratio"] >= p["target"] else "below"
            lines.append(
                f"| {p['format']} | {res['body_bytes'][p['format']]} | {p['ok_rps']:.0f} | {p['p99_us'] / 1000:.1f} | "
                f"{p['mean_batch'] or 0:.1f} | {1000 * (p['server_cpu_s_per_req'] or 0):.2f} | "
                f"{1000 * lim['floor_cpu_s_per_req']:.3f} | {1000 * lim['engine_cpu_s_per_row']:.3f} "
                f"(batch {lim['engine_batch']}) | {lim['rps']:.0f} | {100 * p['ratio']:.0f}% | "
                f"≥ {100 * p['target']:.0f}% ({ok}) |")
        lines.append("")
    return lines


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


def bench_transport(tmp: Path, conc: int, duration_s: float, warmup_s: float, spec: ServiceSpec | None = None) -> dict:
    """ImageNet ResNet-18 (random weights, float32 input): JSON /predict vs v2 JSON vs v2 binary."""
    import model_zoo

    options = {"depth": 18, "input_dtype": "float32"}
    repo = random_weights_repo(tmp, "resnet18", "imagenet-resnet", options, {"max_batch_size": 16})
    zoo = model_zoo.get("imagenet-resnet", **options)
    out = {"model": "resnet18-transport", "concurrency": conc, "points": []}
    srv = (spec or ServiceSpec()).start(repo, "resnet18")
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
    if res["model"].endswith("-limits"):
        return limits_table(res)
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
    for kind in dict.fromkeys(p["server"] for p in res["points"]):
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
    ap.add_argument("--model", choices=["digits", "cifar-resnet20", "transport", "limits", "all"], default="all",
                    help="digits / cifar-resnet20: service vs naive vs floor vs engine; transport: ImageNet "
                         "ResNet-18 (224x224x3 float32) through JSON /predict, v2 JSON and v2 binary at c=16; "
                         "limits: CIFAR ResNet-20 per request format, measured req/s vs cores / (HTTP floor CPU "
                         "per request + engine CPU per row) at --limits-concurrency")
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated connection counts (default 1,8,64)")
    ap.add_argument("--limits-concurrency", type=int, default=64, help="connections of the limits points (default 64)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5; longer: steadier)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each server's points")
    ap.add_argument("--engine-seconds", type=float, default=3.0,
                    help="seconds of run_batch per batch size for the limits' engine CPU (default 3)")
    ap.add_argument("--workers", default="default",
                    help="service settings to run, comma-separated: N sets TPSERVE_WORKERS=N (0: embedded, one "
                         "process), 'default' leaves it as the environment has it (e.g. 1,2,default; default: default)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every service run (repeatable), e.g. TPSERVE_BATCHING__MAX_BATCH_SIZE=32")
    ap.add_argument("--service-cmd", default=None,
                    help="start the service with this command instead of 'python -m service ...'; placeholders "
                         "{python} {port} {repo}; it must listen on 127.0.0.1:{port} and serve {repo}")
    ap.add_argument("--out", default=None, help="write results JSON here (default bench/results/serve-<date>.json; "
                                                "--model limits: serve-limits-<date>.json)")
    ap.add_argument("--http-floor", metavar="RESPONSES_JSON", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.http_floor:
        return run_http_floor(a.http_floor, a.port)
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: sudo apt-get install wrk")
    conc = [int(c) for c in a.concurrency.split(",")]
    specs = service_specs(a.workers, a.env, a.service_cmd)
    import model_zoo

    all_results = []
    with tempfile.TemporaryDirectory(prefix="tpserve-bench-") as tmp:
        if a.model in ("digits", "all"):
            print("digits (bundled mnist-convnet)", flush=True)
            zoo = model_zoo.get("mnist-convnet")
            all_results.append(bench_model("digits", ROOT / "model_repository", "digits", example_body(zoo), conc,
                                           a.duration, a.warmup, specs))
        if a.model in ("cifar-resnet20", "all"):
            print("CIFAR ResNet-20 (random weights)", flush=True)
            repo = random_weights_repo(Path(tmp), "resnet20", "cifar10-resnet", {"depth": 20},
                                       {"max_batch_size": 64})
            zoo = model_zoo.get("cifar10-resnet", depth=20)
            all_results.append(bench_model("resnet20", repo, "resnet20", example_body(zoo), conc, a.duration,
                                           a.warmup, specs))
        if a.model in ("transport", "all"):
            print("transport cost: ImageNet ResNet-18 (random weights, float32 input)", flush=True)
            all_results.append(bench_transport(Path(tmp), 16, a.duration, a.warmup, specs[0]))
        if a.model in ("limits", "all"):
            print(f"limits: CIFAR ResNet-20 (random weights), c={a.limits_concurrency}, per request format", flush=True)
            all_results.append(bench_limits(Path(tmp), specs, a.limits_concurrency, a.duration, a.warmup,
                                            a.engine_seconds))
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_end": os.getloadavg(),
            "argv": sys.argv[1:] if argv is None else list(argv), "commit": _commit()}
    print()
    for res in all_results:
        print("\n".join(summarise(res)))
        print()
    stem = "serve-limits" if a.model == "limits" else "serve"
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"{stem}-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": all_results}, indent=1, default=str))
    print(f"results written to {out}")


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()

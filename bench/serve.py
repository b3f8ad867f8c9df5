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

gRPC (KServe v2 / Triton ``ModelInfer``) is driven with ``h2load`` (:func:`run_grpc`): ``--model transport``
(ImageNet ResNet-18, one 224x224x3 float32 image: JSON /predict, v2 JSON, v2 binary and gRPC raw at c=16)
and ``--model grpc`` (the bundled digits model: v2 JSON and v2 binary against gRPC raw and typed at each
``--concurrency``); ``--grpc-streams M`` puts M streams on each HTTP/2 connection. gRPC errors are HTTP
200s with the status in the trailers, so every gRPC point also counts failures from the answers' bytes
and from the server's own statistics, and its answer is checked with grpcio before and after the load.
``bench/grpc_peers.py`` runs the same gRPC load against PyTriton.

``--workers 0,1,2,default`` runs every service point once per ``TPSERVE_WORKERS`` setting ("default":
as in this environment, normally unset; 0: embedded); ``--env K=V`` and ``--service-cmd`` change how the
service is started.

wrk and h2load come from Debian's packages: ``sudo apt-get install wrk nghttp2-client``.

    python -m bench.serve                      # digits (bundled), CIFAR ResNet-20, transport, grpc, limits
    python -m bench.serve --model grpc,transport --duration 10          # the gRPC cases only
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
import struct
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
    ``cmd`` (and the ``port`` it listens on), any other command.

    ``grpc_port``: where it serves gRPC (``grpc_target`` is ``127.0.0.1:<grpc_port>``); the service always
    gets one, a free port unless given, through ``TPSERVE_GRPC_PORT`` (so that ``--service-cmd`` commands
    get it too). ``env``: extra environment; a value None removes that variable. ``new_session``: the
    server gets a process group of its own, and :meth:`stop` ends what is left of that group after the
    server itself has exited (for servers that start helpers of their own, such as Triton's)."""

    def __init__(self, kind: str, repo: Path, model: str, cmd: list[str] | None = None, port: int | None = None,
                 env: dict | None = None, grpc_port: int | None = None, new_session: bool = False):
        self.kind, self.port = kind, port or free_port()
        self.grpc_port = free_port() if grpc_port is None and kind == "service" else grpc_port
        self.new_session = new_session
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        if kind == "service":
            env["TPSERVE_GRPC_PORT"] = str(self.grpc_port)
        env = {k: v for k, v in env.items() if v is not None}
        if cmd is None and kind == "service":
            cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port),
                   "--model-repository", str(repo), "--log-level", "warning"]
        elif cmd is None:
            cmd = [sys.executable, "-m", "bench.baselines", kind, "--model-repository", str(repo), "--model", model,
                   "--port", str(self.port)]
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{kind}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=new_session)
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}" if self.grpc_port else None

    def wait(self, body: bytes, timeout_s=300):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; log: {self.log_tail()}")
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

    def log_tail(self, n: int = 2000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-n:]

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.new_session:            # helpers left in its process group: SIGTERM, then SIGKILL after 5 s
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _group_alive(self.proc.pid):
                    time.sleep(0.2)
        self.log.close()
        os.unlink(self.log.name)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


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
    """:func:`run_wrk` under :func:`measure`."""
    return measure(srv, lambda: run_wrk(srv.url, body_file, conc, duration_s, path, headers), batch_stats)


def measure(srv: Server, run, batch_stats: bool = False) -> dict:
    """``run()`` (one load generator run, :func:`run_wrk` or :func:`run_grpc`) plus the CPU seconds per
    answered request of the server's process tree and of the load generator itself, and (``batch_stats``)
    the service's mean executed batch over the run. Answered: requests less non-2xx answers and
    ``grpc_failed`` (gRPC errors, which travel as HTTP 200: see :func:`run_grpc`)."""
    before = srv.batch_stats() if batch_stats else None
    cpu0, ru0 = tree_cpu_s(srv.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run()
    cpu1, ru1 = tree_cpu_s(srv.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = r["requests"] - r["non2xx"] - r.get("grpc_failed", 0)
    r["ok_rps"] = ok / (r["duration_us"] / 1e6)
    r["server_cpu_s"] = cpu_delta(cpu0, cpu1)
    r["server_processes"] = len(cpu1)
    r["server_cpu_s_per_req"] = r["server_cpu_s"] / ok if ok else None
    client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)   # the only child reaped
    r["client_cpu_s_per_req"] = client_cpu / ok if ok else None
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
_NP_TYPES = {v: k for k, v in _V2_TYPES.items()}


def format_input(spec, rows: int = 1, seed: int = 0) -> np.ndarray:
    """``rows`` random inputs for ``spec`` (a zoo ``InputSpec`` or the service's ``TensorSpec``), inside its
    declared range; floats rounded to 3 decimals, so that JSON carries them exactly."""
    dtype = np.dtype(spec.dtype)
    lo, hi = spec.value_range or (0.0, 1.0)
    margin = 0.01 * (hi - lo)       # rounded values stay inside the declared range (the service checks it)
    x = np.random.default_rng(seed).uniform(lo + margin, hi - margin, size=(rows, *spec.shape))
    return x.round().astype(dtype) if dtype.kind in "iub" else np.round(x, 3).astype(dtype)


def format_bodies(spec, model: str, output: str = "prob", rows: int = 1, seed: int = 0) -> dict[str, dict]:
    """The same ``rows`` random inputs (:func:`format_input`) in each request format of :data:`FORMATS`,
    asking for the one output ``output``. Each value: ``path``, ``body`` (bytes), ``content_type``,
    ``headers`` (HTTP) and ``wrk_env`` (for post.lua)."""
    x = format_input(spec, rows, seed)
    dtype = x.dtype
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


def v2_outputs(r: httpx.Response) -> dict[str, np.ndarray]:
    """The outputs of a v2 answer (JSON, or binary after an ``Inference-Header-Content-Length`` header)."""
    n = r.headers.get("inference-header-content-length")
    head = json.loads(r.content[:int(n)] if n is not None else r.content)
    offset, out = int(n or 0), {}
    for o in head["outputs"]:
        dtype = np.dtype(_NP_TYPES[o["datatype"]]).newbyteorder("<")
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            a = np.frombuffer(r.content[offset:offset + size], dtype)
            offset += size
        else:
            a = np.asarray(o["data"], dtype)
        out[o["name"]] = a.reshape(o["shape"])
    return out


def same_answer(what: str, got: dict[str, np.ndarray], ref: dict[str, np.ndarray], atol: float = 1e-5) -> float:
    """Raise unless ``got`` holds ``ref``'s outputs with the same shapes and values within ``atol``
    (+ 1e-5 relative); return the largest absolute difference."""
    diff = 0.0
    for name, want in ref.items():
        a = got.get(name)
        if a is None or a.shape != want.shape or not np.allclose(a, want, rtol=1e-5, atol=atol):
            raise AssertionError(f"{what}: output {name!r} differs from the reference: "
                                 f"{None if a is None else a.reshape(-1)[:5]} vs {want.reshape(-1)[:5]}")
        diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - want))) if a.size else 0.0)
    return diff


# --------------------------------------------------------------------------------------------- gRPC
# KServe v2 / Triton gRPC (inference.GRPCInferenceService/ModelInfer) under load: h2load (Debian's
# nghttp2-client) posts one length-prefixed ModelInferRequest per stream, as any gRPC client would on
# the wire; wrk speaks only HTTP/1.1. The answers are checked with grpcio, sending the same bytes.
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_FORMATS = ("gRPC raw", "gRPC typed")
_TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
          "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
          "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}


def grpc_requests(x: np.ndarray, input_name: str, model: str, output: str = "prob") -> dict[str, bytes]:
    """Serialized ``ModelInferRequest`` messages carrying ``x`` as ``input_name`` and asking for ``output``,
    one per :data:`GRPC_FORMATS`: "gRPC raw" (``raw_input_contents``, little-endian bytes: what
    tritonclient sends) and "gRPC typed" (``contents.<type>_contents``, e.g. ``fp32_contents``)."""
    from service.grpc import kserve_v2_pb2 as pb

    datatype = _V2_TYPES[x.dtype.name]
    out = {}
    for label in GRPC_FORMATS:
        r = pb.ModelInferRequest(model_name=model)
        t = r.inputs.add(name=input_name, datatype=datatype, shape=list(x.shape))
        r.outputs.add(name=output)
        if label == "gRPC raw":
            r.raw_input_contents.append(x.astype(x.dtype.newbyteorder("<")).tobytes())
        else:
            getattr(t.contents, _TYPED[datatype]).extend(x.reshape(-1).tolist())
        out[label] = r.SerializeToString()
    return out


def grpc_frame(message: bytes) -> bytes:
    """``message`` as one gRPC length-prefixed message (not compressed): the body of a unary call."""
    return b"\0" + struct.pack(">I", len(message)) + message


def _channel(target: str):
    import grpc

    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1),
                                                  ("grpc.max_send_message_length", -1)])


def grpc_infer(target: str, message: bytes, timeout_s: float = 60) -> tuple[dict[str, np.ndarray], int]:
    """One ``ModelInfer`` call through grpcio with exactly ``message`` (the bytes h2load sends): the
    outputs as arrays, and the answer's size on the wire (5-byte prefix + message), which every
    successful answer to the same request has. Raises ``grpc.RpcError`` unless the status is OK."""
    from service.grpc import kserve_v2_pb2 as pb

    with _channel(target) as ch:
        raw = ch.unary_unary(GRPC_INFER)(message, timeout=timeout_s)     # no serializers: bytes in, bytes out
    resp = pb.ModelInferResponse.FromString(raw)
    out = {}
    for i, t in enumerate(resp.outputs):
        dtype = np.dtype(_NP_TYPES[t.datatype]).newbyteorder("<")
        if resp.raw_output_contents:
            a = np.frombuffer(resp.raw_output_contents[i], dtype)
        else:
            a = np.asarray(getattr(t.contents, _TYPED[t.datatype]), dtype)
        out[t.name] = a.reshape(list(t.shape))
    return out, 5 + len(raw)


def grpc_counts(target: str, model: str) -> tuple[int, int]:
    """(succeeded, failed) inference requests the server has counted for ``model`` so far: its answer to
    ``ModelStatistics`` (Triton's statistics extension, which tpserve and Triton both serve over gRPC)."""
    from service.grpc import kserve_v2_pb2 as pb
    from service.grpc import kserve_v2_pb2_grpc as pb_grpc

    with _channel(target) as ch:
        stats = pb_grpc.GRPCInferenceServiceStub(ch).ModelStatistics(pb.ModelStatisticsRequest(name=model),
                                                                      timeout=30)
    return (sum(m.inference_stats.success.count for m in stats.model_stats),
            sum(m.inference_stats.fail.count for m in stats.model_stats))


def wait_grpc(srv: Server, model: str, timeout_s: float = 300):
    """Until ``ModelReady`` says ``model`` is ready on ``srv``'s gRPC port (raise if the server exits)."""
    import grpc

    from service.grpc import kserve_v2_pb2 as pb
    from service.grpc import kserve_v2_pb2_grpc as pb_grpc

    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout_s:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.kind} server exited; log: {srv.log_tail()}")
        try:
            with _channel(srv.grpc_target) as ch:
                if pb_grpc.GRPCInferenceServiceStub(ch).ModelReady(pb.ModelReadyRequest(name=model), timeout=5).ready:
                    return
            last = "not ready"
        except grpc.RpcError as e:
            last = f"{e.code()}: {e.details()}"
        time.sleep(0.3)
    raise TimeoutError(f"{srv.kind}: model {model!r} not ready over gRPC after {timeout_s} s ({last}); "
                       f"log: {srv.log_tail()}")


def run_h2load(target: str, body_file: Path, conc: int, duration_s: float, streams: int = 1) -> dict:
    """h2load posting ``body_file`` (one gRPC-framed ModelInferRequest, :func:`grpc_frame`) to ModelInfer on
    ``target`` (host:port) for ``duration_s`` (whole seconds, as wrk's), ``conc`` streams in flight in all:
    ``conc // streams`` HTTP/2 connections with ``streams`` each (1: one stream per connection, as wrk's
    connections), on as many threads as wrk's (up to 2). run_wrk's keys (``requests``: streams answered;
    latency percentiles from h2load's per-request log) plus ``started`` (streams begun; those not answered
    were cut at the end), ``data_bytes`` (DATA received: the gRPC answers) and the layout."""
    streams = max(1, min(streams, conc))
    if conc % streams:
        raise ValueError(f"{conc} streams in flight do not split into connections of {streams}")
    clients = conc // streams
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        cmd = ["h2load", "-c", str(clients), "-m", str(streams), "-t", str(min(clients, 2)),
               "-D", str(max(1, round(duration_s))), "-d", str(body_file), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "--log-file", log.name, f"http://{target}{GRPC_INFER}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lat_us = np.array([int(line.split("\t")[2]) for line in Path(log.name).read_text().splitlines() if line],
                          dtype=np.int64)
    out = proc.stdout
    fin = re.search(r"finished in ([0-9.]+)(us|ms|s),", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    data = re.search(r"\((\d+)\) data", out)
    if proc.returncode != 0 or not (fin and req and codes and data):
        raise RuntimeError(f"h2load failed ({proc.returncode}): {out[-800:]} {proc.stderr[-800:]}")
    done = int(req.group(3))
    pct = (lambda q: int(np.percentile(lat_us, q))) if lat_us.size else (lambda q: 0)
    d = {"requests": done, "started": int(req.group(2)),
         "duration_us": float(fin.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[fin.group(2)],
         "socket_errors": int(req.group(6)) + int(req.group(7)), "non2xx": done - int(codes.group(1)),
         "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
         "mean_us": float(lat_us.mean()) if lat_us.size else 0.0, "data_bytes": int(data.group(1)),
         "h2load": {"clients": clients, "streams_per_client": streams, "threads": min(clients, 2)}}
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    return d


def run_grpc(srv: Server, model: str, body_file: Path, answer_bytes: int, conc: int, duration_s: float,
             streams: int = 1) -> dict:
    """:func:`run_h2load` on ``srv``'s gRPC port, with the failures h2load cannot see: a gRPC error is an
    HTTP 200 whose status is in the trailers, so h2load counts it as a success. Two counts of them:

    * ``short_answers``: answered streams less the full answers in the DATA received (``data_bytes`` over
      ``answer_bytes``, the size of the verified answer to the same request; an error carries no message);
    * ``server_failed``: the server's own count of failed requests over the run (:func:`grpc_counts`), of
      which the streams h2load cut at the end (``started`` - ``requests``; a server may count those as
      cancelled) are forgiven.

    ``grpc_failed`` is the larger of the two; :func:`measure` leaves them out of ``ok_rps``."""
    ok0, failed0 = grpc_counts(srv.grpc_target, model)
    r = run_h2load(srv.grpc_target, body_file, conc, duration_s, streams)
    time.sleep(0.2)                     # streams cut at the end may still be finishing in the server
    ok1, failed1 = grpc_counts(srv.grpc_target, model)
    r.update(answer_bytes=answer_bytes, server_succeeded=ok1 - ok0, server_failed=failed1 - failed0,
             short_answers=max(0, r["requests"] - r["data_bytes"] // answer_bytes))
    r["grpc_failed"] = max(r["short_answers"], r["server_failed"] - (r["started"] - r["requests"]), 0)
    return r


def measure_grpc(srv: Server, model: str, body_file: Path, answer_bytes: int, conc: int, duration_s: float,
                 streams: int = 1, batch_stats: bool = False) -> dict:
    """:func:`run_grpc` under :func:`measure`."""
    return measure(srv, lambda: run_grpc(srv, model, body_file, answer_bytes, conc, duration_s, streams),
                   batch_stats)


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
    """The same single 224x224x3 float32 image (:func:`transport_input`) as /predict JSON, v2 JSON and v2
    binary (the JSON ones rounded to 3 decimals)."""
    spec = zoo.inputs[0]
    x = transport_input(spec)
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


def transport_input(spec) -> np.ndarray:
    """The transport case's one image: ``spec``'s shape (224x224x3), float32 uniform in [0, 255)."""
    return np.random.default_rng(0).uniform(0, 255, size=(1, *spec.shape)).astype(np.float32)


def bench_transport(tmp: Path, conc: int, duration_s: float, warmup_s: float, spec: ServiceSpec | None = None,
                    streams: int = 1) -> dict:
    """ImageNet ResNet-18 (random weights, float32 input): JSON /predict vs v2 JSON vs v2 binary (wrk) vs
    gRPC raw (``raw_input_contents``, h2load with ``streams`` per connection: :func:`run_grpc`), the same
    image in each. The gRPC answer is checked against the v2 binary one (the same float32 values) before
    and after its load."""
    import model_zoo

    options = {"depth": 18, "input_dtype": "float32"}
    repo = random_weights_repo(tmp, "resnet18", "imagenet-resnet", options, {"max_batch_size": 16})
    zoo = model_zoo.get("imagenet-resnet", **options)
    out = {"model": "resnet18-transport", "concurrency": conc, "grpc_streams": streams, "points": []}
    srv = (spec or ServiceSpec()).start(repo, "resnet18")

    def report(label: str, body: bytes, r: dict):
        r.update(transport=label, body_bytes=len(body))
        out["points"].append(r)
        print(f"  resnet18   {label:13s} c={conc:<3d} body {len(body) / 1e6:5.2f} MB  {r['ok_rps']:7.1f} req/s  "
              f"p50 {r['p50_us'] / 1000:8.1f} ms  p99 {r['p99_us'] / 1000:8.1f} ms  "
              f"errors {r['socket_errors'] + r['non2xx'] + r.get('grpc_failed', 0)}  "
              f"server CPU {1000 * (r['server_cpu_s_per_req'] or 0):.2f} ms/req", flush=True)

    try:
        bodies = transport_bodies(zoo)
        srv.wait(bodies["predict JSON"][1])
        for label, (path, body, headers) in bodies.items():
            path = path.format(name="resnet18")
            f = tmp / "transport-body.bin"
            f.write_bytes(body)
            run_wrk(srv.url, f, conc, warmup_s, path, headers)
            report(label, body, measure_wrk(srv, f, conc, duration_s, path, headers))
        _, v2b, v2b_env = bodies["v2 binary"]
        ref = v2_outputs(httpx.post(srv.url + "/v2/models/resnet18/infer", content=v2b, timeout=60,
                                    headers={"content-type": v2b_env["CONTENT_TYPE"],
                                             "inference-header-content-length": v2b_env["HEADER_LEN"]}))
        message = grpc_requests(transport_input(zoo.inputs[0]), zoo.inputs[0].name, "resnet18")["gRPC raw"]
        got, answer_bytes = grpc_infer(srv.grpc_target, message)
        diff = same_answer("resnet18 gRPC raw", got, ref)
        f = tmp / "transport-grpc.bin"
        f.write_bytes(grpc_frame(message))
        run_grpc(srv, "resnet18", f, answer_bytes, conc, warmup_s, streams)
        r = measure_grpc(srv, "resnet18", f, answer_bytes, conc, duration_s, streams)
        same_answer("resnet18 gRPC raw after the load", grpc_infer(srv.grpc_target, message)[0], ref)
        r["max_abs_diff_vs_v2_binary"] = diff
        report("gRPC raw", f.read_bytes(), r)
    finally:
        srv.stop()
    return out


GRPC_HTTP = ("v2 JSON", "v2 binary")      # the HTTP formats the gRPC case compares with


def bench_grpc(tmp: Path, repo: Path, model: str, spec, concurrency: list[int], duration_s: float, warmup_s: float,
               specs: list[ServiceSpec], streams: int = 1) -> dict:
    """``model`` per protocol at each concurrency, for each service setting: HTTP v2 JSON and v2 binary
    (wrk) against gRPC raw and typed (h2load, ``streams`` per connection: :func:`run_grpc`), all four
    carrying the same input (:func:`format_input`). Every answer is checked against the v2 binary one
    before the load, and each gRPC one again after its load."""
    http = format_bodies(spec, model)
    messages = grpc_requests(format_input(spec), spec.name, model)
    bodies = {**{k: http[k]["body"] for k in GRPC_HTTP}, **{k: grpc_frame(m) for k, m in messages.items()}}
    files = {}
    for i, (label, body) in enumerate(bodies.items()):
        files[label] = tmp / f"grpc-case-{i}.bin"
        files[label].write_bytes(body)
    out = {"model": f"{model}-grpc", "concurrency": concurrency, "grpc_streams": streams, "duration_s": duration_s,
           "body_bytes": {k: len(b) for k, b in bodies.items()}, "points": [], "checks": []}

    def load(srv: Server, answer_bytes: dict[str, int], label: str, c: int, d: float) -> dict:
        if label in messages:
            return measure_grpc(srv, model, files[label], answer_bytes[label], c, d, streams, batch_stats=True)
        return measure_wrk(srv, files[label], c, d, http[label]["path"], http[label]["wrk_env"], batch_stats=True)

    for s in specs:
        srv = s.start(repo, model)
        answer_bytes: dict[str, int] = {}
        try:
            srv.wait(http["JSON /predict"]["body"])
            ref = v2_outputs(check_answer(srv.url, http["v2 binary"]))
            diffs = {"v2 JSON": same_answer(f"{model} v2 JSON", v2_outputs(check_answer(srv.url, http["v2 JSON"])), ref)}
            for label, m in messages.items():
                got, answer_bytes[label] = grpc_infer(srv.grpc_target, m)
                diffs[label] = same_answer(f"{model} {label}", got, ref)
            out["checks"].append({"workers": s.label, "max_abs_diff_vs_v2_binary": diffs})
            for label in bodies:
                load(srv, answer_bytes, label, max(concurrency), warmup_s)
                for c in concurrency:
                    p = load(srv, answer_bytes, label, c, duration_s)
                    p.update(workers=s.label, env=s.env, format=label, concurrency=c, loadavg_1m=os.getloadavg()[0])
                    out["points"].append(p)
                    print(f"  {model} w={s.label:<7s} {label:10s} c={c:<3d} {p['ok_rps']:8.1f} req/s  "
                          f"p50 {p['p50_us'] / 1000:6.2f} ms  p99 {p['p99_us'] / 1000:6.2f} ms  errors "
                          f"{p['socket_errors'] + p['non2xx'] + p.get('grpc_failed', 0)}  mean batch "
                          f"{p['mean_batch'] or 0:.1f}  server CPU {1000 * (p['server_cpu_s_per_req'] or 0):.2f} ms/req"
                          f"  client CPU {1000 * (p['client_cpu_s_per_req'] or 0):.2f} ms/req", flush=True)
                if label in messages:
                    same_answer(f"{model} {label} after the load", grpc_infer(srv.grpc_target, messages[label])[0], ref)
        finally:
            srv.stop()
    return out


def grpc_table(res: dict) -> list[str]:
    cs = res["concurrency"]
    top = max(cs)
    lines = [f"### {res['model']}: HTTP (wrk) vs gRPC (h2load, {res['grpc_streams']} stream(s) per connection), "
             f"{res['duration_s']:g} s per point", ""]
    for w in dict.fromkeys(p["workers"] for p in res["points"]):
        pts = {(p["format"], p["concurrency"]): p for p in res["points"] if p["workers"] == w}
        lines += [f"TPSERVE_WORKERS={w}" if w != "default" else "TPSERVE_WORKERS not set by the bench (default)", "",
                  "| format | body B | " + " | ".join(f"c={c} req/s, p50/p99 ms" for c in cs)
                  + f" | server CPU ms/req at c={top} | mean batch at c={top} | errors |",
                  "|---|---:|" + "---|" * len(cs) + "---:|---:|---:|"]
        for f in res["body_bytes"]:
            row = [pts.get((f, c)) for c in cs]
            cells = [f"{p['ok_rps']:.0f}, {p['p50_us'] / 1000:.2f}/{p['p99_us'] / 1000:.2f}" if p else "-" for p in row]
            last = pts.get((f, top)) or {}
            errors = sum(p["socket_errors"] + p["non2xx"] + p.get("grpc_failed", 0) for p in row if p)
            lines.append(f"| {f} | {res['body_bytes'][f]} | " + " | ".join(cells) +
                         f" | {1000 * (last.get('server_cpu_s_per_req') or 0):.2f} | {last.get('mean_batch') or 0:.1f}"
                         f" | {errors} |")
        lines.append("")
        for num, den in (("gRPC raw", "v2 JSON"), ("gRPC typed", "v2 JSON"), ("gRPC raw", "v2 binary")):
            ratios = {c: pts[(num, c)]["ok_rps"] / pts[(den, c)]["ok_rps"] for c in cs
                      if (num, c) in pts and (den, c) in pts and pts[(den, c)]["ok_rps"]}
            if ratios:
                goal = ""
                if (num, den) == ("gRPC raw", "v2 JSON") and 64 in ratios:
                    goal = f" (target at c=64: ≥ 1.2: {'met' if ratios[64] >= 1.2 else 'not met'})"
                lines.append(f"{num} ÷ {den} req/s: " + ", ".join(f"c={c} {r:.2f}×" for c, r in ratios.items()) + goal)
        lines.append("")
    return lines


def summarise(res) -> list[str]:
    if res["model"].endswith("-limits"):
        return limits_table(res)
    if res["model"].endswith("-grpc"):
        return grpc_table(res)
    if "transport" in res["points"][0]:
        lines = [f"### {res['model']} (c={res['concurrency']})", "",
                 "| transport | body MB | req/s | p50 ms | p99 ms | server CPU ms/req | errors |",
                 "|---|---|---|---|---|---|---|"]
        for p in res["points"]:
            lines.append(f"| {p['transport']} | {p['body_bytes'] / 1e6:.2f} | {p.get('ok_rps', p['rps']):.1f} | "
                         f"{p['p50_us'] / 1000:.1f} | {p['p99_us'] / 1000:.1f} | "
                         f"{1000 * (p.get('server_cpu_s_per_req') or 0):.2f} | "
                         f"{p['socket_errors'] + p['non2xx'] + p.get('grpc_failed', 0)} |")
        rps = {p["transport"]: p.get("ok_rps", p["rps"]) for p in res["points"]}
        if rps.get("gRPC raw") and rps.get("v2 binary"):
            ratio = rps["gRPC raw"] / rps["v2 binary"]
            lines += ["", f"gRPC raw ÷ v2 binary req/s: {ratio:.2f}× (target ≥ 1: {'met' if ratio >= 1 else 'not met'})"]
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
    ap.add_argument("--model", default="all", type=_models, metavar="{" + ",".join(MODELS) + "}[,...]",
                    help="one or more, comma-separated (default all): digits / cifar-resnet20: service vs naive vs "
                         "floor vs engine; transport: ImageNet ResNet-18 (224x224x3 float32) through JSON /predict, "
                         "v2 JSON, v2 binary and gRPC raw at c=16; grpc: the bundled digits model through HTTP v2 "
                         "JSON and v2 binary (wrk) and gRPC raw and typed (h2load) at --concurrency; limits: CIFAR "
                         "ResNet-20 per request format, measured req/s vs cores / (HTTP floor CPU per request + "
                         "engine CPU per row) at --limits-concurrency")
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated connection counts (default 1,8,64)")
    ap.add_argument("--limits-concurrency", type=int, default=64, help="connections of the limits points (default 64)")
    ap.add_argument("--grpc-streams", type=int, default=1,
                    help="gRPC points: streams per HTTP/2 connection (h2load -m); the concurrency is the streams in "
                         "flight in all, over concurrency / streams connections (default 1: one per connection, "
                         "as wrk's)")
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
                                                "--model limits: serve-limits-<date>.json; --model grpc and/or "
                                                "transport: serve-grpc-<date>.json)")
    ap.add_argument("--http-floor", metavar="RESPONSES_JSON", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.http_floor:
        return run_http_floor(a.http_floor, a.port)
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: sudo apt-get install wrk")
    models = set(MODELS[:-1]) if "all" in a.model else set(a.model)
    if models & {"grpc", "transport"} and shutil.which("h2load") is None:
        sys.exit("the gRPC points need h2load: sudo apt-get install nghttp2-client")
    conc = [int(c) for c in a.concurrency.split(",")]
    specs = service_specs(a.workers, a.env, a.service_cmd)
    import model_zoo

    all_results = []
    with tempfile.TemporaryDirectory(prefix="tpserve-bench-") as tmp:
        if "digits" in models:
            print("digits (bundled mnist-convnet)", flush=True)
            zoo = model_zoo.get("mnist-convnet")
            all_results.append(bench_model("digits", ROOT / "model_repository", "digits", example_body(zoo), conc,
                                           a.duration, a.warmup, specs))
        if "cifar-resnet20" in models:
            print("CIFAR ResNet-20 (random weights)", flush=True)
            repo = random_weights_repo(Path(tmp), "resnet20", "cifar10-resnet", {"depth": 20},
                                       {"max_batch_size": 64})
            zoo = model_zoo.get("cifar10-resnet", depth=20)
            all_results.append(bench_model("resnet20", repo, "resnet20", example_body(zoo), conc, a.duration,
                                           a.warmup, specs))
        if "transport" in models:
            print("transport cost: ImageNet ResNet-18 (random weights, float32 input)", flush=True)
            all_results.append(bench_transport(Path(tmp), 16, a.duration, a.warmup, specs[0], a.grpc_streams))
        if "grpc" in models:
            print(f"gRPC vs HTTP: digits (bundled mnist-convnet), {a.grpc_streams} stream(s) per gRPC connection",
                  flush=True)
            all_results.append(bench_grpc(Path(tmp), ROOT / "model_repository", "digits",
                                          model_zoo.get("mnist-convnet").inputs[0], conc, a.duration, a.warmup,
                                          specs, a.grpc_streams))
        if "limits" in models:
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
    stem = "serve-limits" if models == {"limits"} else "serve-grpc" if models <= {"grpc", "transport"} else "serve"
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"{stem}-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": all_results}, indent=1, default=str))
    print(f"results written to {out}")


MODELS = ("digits", "cifar-resnet20", "transport", "grpc", "limits", "all")


def _models(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if v not in MODELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected one or more of {', '.join(MODELS)} (comma-separated), got {value!r}")
    return names


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()

"""``make gpu-check``: what a GPU machine gives tpserve, in one run.

1. **GPUs**: ``tf.config.list_physical_devices('GPU')`` (none: exit 2, unless ``--allow-cpu``, which runs
   every step below on the CPU device so the script itself can be tried anywhere).
2. **Layouts and kernels**: for each model, the service's own loader (``ModelRepository.load``) builds
   (a) the model as configured by default, (b) ``data_format: NCHW`` and (c) ``data_format: NHWC``, and the
   script reads the built graphs: the ``data_format`` of every ``Conv2D`` and the ``Transpose`` count of
   each replica. Expected: the default build runs NCHW convolutions on a GPU and NHWC on a CPU; an NCHW
   build runs native NCHW kernels on a GPU (no transposes around each convolution) and the CPU-portable
   form (transpose -> NHWC -> transpose) on a CPU. The NCHW and NHWC builds (same weights) must give the
   same logits within ``--tolerance`` (relative to the largest logit); on a GPU they are also compared
   with a CPU build.
3. **Replicas**: the loaded model has one replica per visible GPU (``ServedModel.devices``), each
   replica's convolutions placed on its own device.
4. **Engine**: rows/s of ``run_batch`` at batch 1, 2, 4, ..., 256, every replica driven from its own
   thread (``bench.serve.engine_cost``), for CIFAR ResNet-20 and ImageNet ResNet-18 (224x224x3 uint8),
   per layout in ``--layouts``.
5. **Served**: ``python -m service`` per ``TPSERVE_WORKERS`` in ``--workers`` (HTTP front-end
   processes), the model configured by default with ``max_batch_size`` ``--serve-max-batch``; wrk
   (or, without wrk, ``bench.loadgen`` in several processes) at c=64 and c=256 with one row per
   request as v2 binary and ``.npy`` ``/predict``: req/s, p50/p99, mean executed batch, server CPU per
   request and GPU utilisation (``nvidia-smi``, when present).

Weights are random (speed does not depend on them). Everything that imports TensorFlow (steps 1-4)
runs in a child process, which exits before the servers start, so the servers get the GPUs' memory.
Prints markdown tables and writes ``bench/results/gpu-check-<date>.json``. Exit status: 0 when every
check passed, 1 when one failed (the measurements are still written), 2 without a GPU.

    make gpu-check                                   # defaults: both models, batch 1..256, workers 1,2,4
    make gpu-check GPU_CHECK_ARGS="--workers 1,2,4,8 --duration 20"
    python -m bench.gpu_check --allow-cpu --models resnet20 --max-batch 4 --engine-seconds 0.5 \\
        --serve-models resnet20 --workers 1 --concurrency 8 --duration 2 --warmup 1 --serve-max-batch 8
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .serve import (  # noqa: E402  (no TensorFlow here: bench.serve imports it only inside functions)
    FORMATS,
    ROOT,
    ServiceSpec,
    check_answer,
    cpu_delta,
    measure_wrk,
    run_wrk,
    service_specs,
    tree_cpu_s,
)

MODELS = {  # name -> (zoo architecture, options): the two networks of the issue
    "resnet20": ("cifar10-resnet", {"depth": 20}),
    "resnet18": ("imagenet-resnet", {"depth": 18}),
}
SERVE_FORMATS = ("v2 binary", ".npy /predict")
BATCH_SIZES = "1,2,4,8,16,32,64,128,256"
NO_GPU = 2


# ============================================================================ child: TensorFlow steps
def _graph_of(model):
    """The TensorFlow graph behind a loaded ``service.repository.TFModel`` (None if it has none)."""
    return getattr(getattr(model, "_predictor", None), "graph", None)


def _canonical(device: str) -> str:
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(device)
    return f"{(spec.device_type or 'CPU').upper()}:{spec.device_index or 0}"


def graph_layout(model) -> list[dict]:
    """Per replica: its device, the data_format of its Conv2D ops, its Transpose count and the devices
    its Conv2D ops are placed on."""
    graph = _graph_of(model)
    out = []
    for i, dev in enumerate(model.devices):
        scope = f"replica{i}/"
        formats: dict[str, int] = {}
        placed: dict[str, int] = {}
        transposes = 0
        if graph is not None:
            for op in graph.get_operations():
                if not op.name.startswith(scope):
                    continue
                if op.type == "Conv2D":
                    fmt = op.get_attr("data_format").decode()
                    formats[fmt] = formats.get(fmt, 0) + 1
                    where = _canonical(op.device) if op.device else "unplaced"
                    placed[where] = placed.get(where, 0) + 1
                elif op.type == "Transpose":
                    transposes += 1
        out.append({"replica": i, "device": dev, "conv2d_formats": formats, "transposes": transposes,
                    "conv2d_devices": placed})
    return out


def _write_repo(root: Path, name: str, architecture: str, options: dict, batching: dict, weights: Path):
    d = root / name
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.npz").symlink_to(weights)
    (d / "config.json").write_text(json.dumps({"architecture": architecture, "options": options,
                                               "batching": batching}))


def _compare(a: dict, b: dict, tol: float) -> dict:
    import numpy as np

    la, lb = np.asarray(a["logits"], np.float64), np.asarray(b["logits"], np.float64)
    scale = max(1.0, float(np.abs(la).max()))
    diff = float(np.abs(la - lb).max())
    return {"max_abs_diff_logits": diff, "max_abs_logit": float(np.abs(la).max()), "relative": diff / scale,
            "tolerance": tol, "ok": diff / scale <= tol,
            "argmax_agree": float(np.mean(la.argmax(1) == lb.argmax(1)))}


def device_phase(a) -> int:
    """Steps 1-4 (TensorFlow): results -> <workdir>/device.json; bodies for step 5 -> <workdir>/bodies."""
    import numpy as np
    import tensorflow as tf

    from .serve import engine_cost, format_bodies, load_model, random_weights_repo

    work = Path(a.workdir)
    res: dict = {"tensorflow": tf.__version__, "built_with_cuda": tf.test.is_built_with_cuda(), "gpus": [],
                 "checks": [], "layouts": {}, "compare": {}, "engine": {}, "bodies": {}, "serve_repos": {}}
    for g in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(g)
        except Exception:  # noqa: BLE001 - details are informative only
            details = {}
        res["gpus"].append({"name": g.name, **{k: str(v) for k, v in details.items()}})
    on_gpu = bool(res["gpus"])
    res["device_kind"] = "GPU" if on_gpu else "CPU"

    def save():
        (work / "device.json").write_text(json.dumps(res, indent=1, default=str))

    if not on_gpu and not a.allow_cpu:
        save()
        return NO_GPU
    print(f"TensorFlow {tf.__version__} (CUDA build: {res['built_with_cuda']}); GPUs: "
          + (", ".join(f"{g['name']} {g.get('device_name', '')}".strip() for g in res["gpus"]) or
             "none (--allow-cpu: every step on the CPU)"), flush=True)

    def check(name: str, ok: bool, detail: str):
        res["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    expected_devices = [f"/gpu:{i}" for i in range(len(res["gpus"]))] if on_gpu else ["/cpu:0"]
    expected_fmt = "NCHW" if on_gpu else "NHWC"
    sizes = [b for b in (int(x) for x in a.batch_sizes.split(",")) if b <= a.max_batch]
    layouts = [x.strip().upper() for x in a.layouts.split(",") if x.strip()]
    rng = np.random.default_rng(0)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    serve_models = [m.strip() for m in (a.serve_models or a.models).split(",") if m.strip()]
    for name in dict.fromkeys(models + serve_models):
        arch, options = MODELS[name]
        base = work / "weights"
        random_weights_repo(base, name, arch, options, {})           # random weights, built NHWC
        weights = base / name / "1" / "model.npz"
        variants = work / "variants"
        _write_repo(variants, name, arch, options, {}, weights)      # as configured by default
        for fmt in ("NCHW", "NHWC"):
            _write_repo(variants, f"{name}-{fmt.lower()}", arch, {**options, "data_format": fmt}, {}, weights)
        serve_repo = work / "serve" / name
        _write_repo(serve_repo, name, arch, options, {"max_batch_size": a.serve_max_batch}, weights)
        res["serve_repos"][name] = str(serve_repo)
        import model_zoo

        spec = model_zoo.get(arch, **options).inputs[0]
        bodies = format_bodies(spec, name)
        (work / "bodies").mkdir(exist_ok=True)
        res["bodies"][name] = {}
        for label, f in bodies.items():
            file = work / "bodies" / f"{name}-{FORMATS.index(label)}.bin"
            file.write_bytes(f["body"])
            res["bodies"][name][label] = {"file": str(file), "path": f["path"], "headers": f["headers"],
                                          "content_type": f["content_type"], "wrk_env": f["wrk_env"],
                                          "bytes": len(f["body"])}
        if name not in models:
            continue
        print(f"{name} ({arch} {options})", flush=True)

        # --- default build: layout and replicas
        m = load_model(variants, name, a.max_batch)
        try:
            lay = res["layouts"].setdefault(name, {})
            lay["default"] = graph_layout(m)
            got = [r["conv2d_formats"] for r in lay["default"]]
            check(f"{name}: default build uses {expected_fmt} convolutions on {res['device_kind']}",
                  all(set(f) == {expected_fmt} for f in got),
                  "; ".join(f"replica {r['replica']} on {r['device']}: Conv2D {r['conv2d_formats']}, "
                            f"{r['transposes']} Transpose" for r in lay["default"]))
            check(f"{name}: one replica per {'GPU' if on_gpu else 'CPU device'}",
                  list(m.devices) == expected_devices,
                  f"ServedModel.devices = {list(m.devices)}, expected {expected_devices}")
            placed_ok = all(set(r["conv2d_devices"]) == {_canonical(r["device"])} for r in lay["default"])
            check(f"{name}: each replica's convolutions on its own device", placed_ok,
                  "; ".join(f"replica {r['replica']}: {r['conv2d_devices']}" for r in lay["default"]))
        finally:
            m.close()

        # --- explicit layouts: native kernels, same outputs
        spec0 = None
        outputs = {}
        for fmt in ("NCHW", "NHWC"):
            m = load_model(variants, f"{name}-{fmt.lower()}", a.max_batch)
            try:
                lay[fmt] = graph_layout(m)
                spec0 = m.inputs[0]
                if "x" not in outputs:
                    lo, hi = spec0.value_range or (0.0, 1.0)
                    x = rng.uniform(lo, hi, (a.compare_rows, *spec0.shape))
                    outputs["x"] = (x.round() if np.dtype(spec0.dtype).kind in "iu" else x).astype(spec0.dtype)
                outputs[fmt] = m.run_batch(0, {spec0.name: outputs["x"]})
            finally:
                m.close()
        r0 = lay["NCHW"][0]
        if on_gpu:
            ok = set(r0["conv2d_formats"]) == {"NCHW"}
            what = "native NCHW Conv2D kernels on the GPU"
        else:
            ok = set(r0["conv2d_formats"]) == {"NHWC"} and r0["transposes"] > 0
            what = "NCHW build runs as the CPU-portable form (transpose -> NHWC Conv2D -> transpose)"
        check(f"{name}: {what}", ok, f"data_format=NCHW build, replica 0: Conv2D {r0['conv2d_formats']}, "
                                     f"{r0['transposes']} Transpose; NHWC build: Conv2D "
                                     f"{lay['NHWC'][0]['conv2d_formats']}, {lay['NHWC'][0]['transposes']} Transpose")
        cmp = {"NCHW vs NHWC": _compare(outputs["NCHW"], outputs["NHWC"], a.tolerance)}
        if on_gpu:
            m = load_model(variants, f"{name}-nhwc", a.max_batch, device="cpu")
            try:
                cmp["GPU NHWC vs CPU NHWC"] = _compare(outputs["NHWC"], m.run_batch(0, {spec0.name: outputs["x"]}),
                                                       a.tolerance)
            finally:
                m.close()
        res["compare"][name] = cmp
        for label, c in cmp.items():
            check(f"{name}: {label} outputs agree ({a.compare_rows} rows)", c["ok"],
                  f"max abs diff of logits {c['max_abs_diff_logits']:.3g} (largest logit {c['max_abs_logit']:.3g}, "
                  f"relative {c['relative']:.2g} <= {c['tolerance']:g}?), argmax agree {100 * c['argmax_agree']:.0f}%")

        # --- engine rows/s per layout, every replica at once
        if a.skip_engine:
            continue
        for fmt in layouts:
            m = load_model(variants, f"{name}-{fmt.lower()}", max(sizes))
            try:
                eng = engine_cost(m, sizes, a.engine_seconds)
            finally:
                m.close()
            res["engine"].setdefault(name, {})[fmt] = {str(b): v for b, v in eng.items()}
            for b, v in eng.items():
                print(f"  engine {name} {fmt} batch {b:4d}: {v['rows_per_s']:10.1f} rows/s  p50 {v['p50_ms']:8.2f} ms"
                      f"  host CPU {1000 * v['cpu_s_per_row']:.3f} ms/row  ({v['replicas']} replica(s))", flush=True)
            save()
    save()
    return 0


# ============================================================================ parent: served req/s
def _py_client(args) -> tuple[int, list[float]]:
    port, path, body, headers, conc, duration = args
    from .loadgen import Request, closed_loop

    res = asyncio.run(closed_loop("127.0.0.1", port, lambda i: Request("POST", path, body, headers), conc, duration))
    return len(res), [r.latency for r in res if r.status == 200]


def measure_py(srv, fmt: dict, conc: int, duration_s: float, procs: int) -> dict:
    """wrk's stand-in: ``bench.loadgen.closed_loop`` in ``procs`` processes sharing ``conc`` connections."""
    import numpy as np

    body = Path(fmt["file"]).read_bytes()
    procs = max(1, min(procs, conc))
    shares = [conc // procs + (1 if i < conc % procs else 0) for i in range(procs)]
    before = srv.batch_stats()
    cpu0 = tree_cpu_s(srv.proc.pid)
    with concurrent.futures.ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as ex:
        parts = list(ex.map(_py_client, [(srv.port, fmt["path"], body, fmt["headers"], c, duration_s)
                                         for c in shares]))
    cpu1 = tree_cpu_s(srv.proc.pid)
    after = srv.batch_stats()
    n = sum(p[0] for p in parts)
    lat = [x for p in parts for x in p[1]]
    batches = after[1] - before[1]
    return {"requests": n, "ok_rps": len(lat) / duration_s, "errors": n - len(lat),
            "p50_us": 1e6 * float(np.percentile(lat, 50)) if lat else 0.0,
            "p99_us": 1e6 * float(np.percentile(lat, 99)) if lat else 0.0,
            "server_cpu_s_per_req": cpu_delta(cpu0, cpu1) / len(lat) if lat else None, "server_processes": len(cpu1),
            "mean_batch": (after[0] - before[0]) / batches if batches else None, "client": f"loadgen x{procs}"}


class GpuSampler:
    """``nvidia-smi`` utilisation and memory of every GPU, sampled every 0.5 s while in the block."""

    def __init__(self):
        self.samples: list[list[tuple[float, float]]] = []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
                self.samples.append([tuple(float(v) for v in line.split(",")) for line in out.strip().splitlines()])
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(0.5)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        n = min(len(s) for s in self.samples)
        return {"util_pct_mean": [sum(s[i][0] for s in self.samples) / len(self.samples) for i in range(n)],
                "mem_mib_max": [max(s[i][1] for s in self.samples) for i in range(n)]}


def serve_phase(a, dev: dict, specs: list[ServiceSpec]) -> list[dict]:
    use_wrk = shutil.which("wrk") is not None
    conc = [int(c) for c in a.concurrency.split(",")]
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    points = []
    if not use_wrk:
        print(f"wrk not found: using bench.loadgen in {a.client_procs} processes (slower than wrk; "
              "install wrk for numbers above a few thousand req/s)", flush=True)
    for name in [m.strip() for m in (a.serve_models or a.models).split(",") if m.strip()]:
        repo = Path(dev["serve_repos"][name])
        bodies = dev["bodies"][name]
        for spec in specs:
            print(f"served: {name}, TPSERVE_WORKERS={spec.env.get('TPSERVE_WORKERS', '(unset)')}", flush=True)
            t0 = time.monotonic()
            srv = spec.start(repo, name)
            try:
                srv.wait(Path(bodies["JSON /predict"]["file"]).read_bytes(), timeout_s=a.start_timeout)
                ready_s = time.monotonic() - t0
                for label in formats:
                    f = bodies[label]
                    check_answer(srv.url, {**f, "body": Path(f["file"]).read_bytes()})
                    if use_wrk:
                        run_wrk(srv.url, Path(f["file"]), max(conc), a.warmup, f["path"], f["wrk_env"])
                    for c in conc:
                        with GpuSampler() as gpu:
                            if use_wrk:
                                p = measure_wrk(srv, Path(f["file"]), c, a.duration, f["path"], f["wrk_env"],
                                                batch_stats=True)
                                p["errors"] = p["socket_errors"] + p["non2xx"]
                                p["client"] = "wrk"
                            else:
                                p = measure_py(srv, f, c, a.duration, a.client_procs)
                        p.update(model=name, workers=spec.label, format=label, concurrency=c, gpu=gpu.summary(),
                                 ready_s=ready_s, body_bytes=f["bytes"], loadavg_1m=os.getloadavg()[0])
                        points.append(p)
                        util = p["gpu"]["util_pct_mean"] if p["gpu"] else None
                        print(f"  {name} w={spec.label:<7s} {label:13s} c={c:<4d} {p['ok_rps']:9.1f} req/s  "
                              f"p50 {p['p50_us'] / 1000:7.2f} ms  p99 {p['p99_us'] / 1000:7.2f} ms  "
                              f"errors {p['errors']}  mean batch {p['mean_batch'] or 0:.1f}  server CPU "
                              f"{1000 * (p['server_cpu_s_per_req'] or 0):.2f} ms/req"
                              + (f"  GPU util {', '.join(f'{u:.0f}%' for u in util)}" if util else ""), flush=True)
            finally:
                srv.stop()
    return points


# ============================================================================ report
def tables(dev: dict, points: list[dict]) -> list[str]:
    L = [f"## gpu-check: {dev.get('device_kind')} — TensorFlow {dev.get('tensorflow')}, "
         f"{len(dev.get('gpus', []))} GPU(s)", ""]
    for g in dev.get("gpus", []):
        L.append(f"* {g['name']}: {g.get('device_name', '?')}, compute capability {g.get('compute_capability', '?')}")
    L += ["", "| check | result | detail |", "|---|---|---|"]
    L += [f"| {c['check']} | {'PASS' if c['ok'] else '**FAIL**'} | {c['detail']} |" for c in dev.get("checks", [])]
    if dev.get("layouts"):
        L += ["", "| model | build | replica | device | Conv2D data_format | Transpose ops |", "|---|---|---:|---|---|---:|"]
        for name, builds in dev["layouts"].items():
            for build, reps in builds.items():
                L += [f"| {name} | {build} | {r['replica']} | {r['device']} | "
                      f"{', '.join(f'{k} x{v}' for k, v in r['conv2d_formats'].items())} | {r['transposes']} |"
                      for r in reps]
    for name, per_layout in dev.get("engine", {}).items():
        sizes = sorted({int(b) for v in per_layout.values() for b in v}, key=int)
        L += ["", f"Engine rows/s, {name} (`run_batch`, all replicas at once; p50 ms per call in brackets)", "",
              "| layout | " + " | ".join(f"batch {b}" for b in sizes) + " |", "|---|" + "---:|" * len(sizes)]
        for fmt, rows in per_layout.items():
            cells = [f"{rows[str(b)]['rows_per_s']:.0f} ({rows[str(b)]['p50_ms']:.1f})" if str(b) in rows else "-"
                     for b in sizes]
            L.append(f"| {fmt} | " + " | ".join(cells) + " |")
    if points:
        clients = ", ".join(dict.fromkeys(p.get("client", "?") for p in points))
        L += ["", f"Served (one row per request; client: {clients})", "",
              "| model | TPSERVE_WORKERS (processes) | format | c | req/s | p50 ms | p99 ms | errors | mean batch | "
              "server CPU ms/req | GPU util % |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for p in points:
            util = ", ".join(f"{u:.0f}" for u in p["gpu"]["util_pct_mean"]) if p.get("gpu") else "-"
            L.append(f"| {p['model']} | {p['workers']} ({p.get('server_processes', '?')}) | {p['format']} | {p['concurrency']} | {p['ok_rps']:.0f} | "
                     f"{p['p50_us'] / 1000:.2f} | {p['p99_us'] / 1000:.2f} | {p['errors']} | "
                     f"{p['mean_batch'] or 0:.1f} | {1000 * (p['server_cpu_s_per_req'] or 0):.2f} | {util} |")
    return L


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allow-cpu", action="store_true", help="without a GPU, run every step on the CPU (smoke test)")
    ap.add_argument("--models", default="resnet20,resnet18", help=f"models of steps 2-4 (of {', '.join(MODELS)})")
    ap.add_argument("--batch-sizes", default=BATCH_SIZES, help=f"engine batch sizes (default {BATCH_SIZES})")
    ap.add_argument("--max-batch", type=int, default=256, help="drop engine batch sizes above this (default 256)")
    ap.add_argument("--engine-seconds", type=float, default=2.0, help="seconds per engine point (default 2)")
    ap.add_argument("--layouts", default="NCHW,NHWC", help="data_format builds the engine measures (default NCHW,NHWC)")
    ap.add_argument("--compare-rows", type=int, default=8, help="rows compared between layouts (default 8)")
    ap.add_argument("--tolerance", type=float, default=2e-2,
                    help="max |logit difference| / max(1, largest |logit|) between layouts (default 0.02: "
                         "TF32 convolutions on Ampere+ differ by ~1e-3)")
    ap.add_argument("--skip-engine", action="store_true", help="skip step 4")
    ap.add_argument("--skip-serve", action="store_true", help="skip step 5")
    ap.add_argument("--serve-models", default=None, help="models of step 5 (default: --models)")
    ap.add_argument("--workers", default="1,2,4", help="TPSERVE_WORKERS settings of step 5; 'default' = unset")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service environment")
    ap.add_argument("--service-cmd", default=None, help="service command template ({python} {port} {repo})")
    ap.add_argument("--concurrency", default="64,256", help="connections of step 5 (default 64,256)")
    ap.add_argument("--formats", default=",".join(SERVE_FORMATS), help=f"request formats of step 5 (of {FORMATS})")
    ap.add_argument("--serve-max-batch", type=int, default=256, help="served max_batch_size (default 256)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per served point (default 10)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each format (default 3)")
    ap.add_argument("--start-timeout", type=float, default=600.0, help="seconds a server may take to get ready")
    ap.add_argument("--client-procs", type=int, default=max(1, (os.cpu_count() or 4) // 4),
                    help="load generator processes when wrk is missing (default cpus/4)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/gpu-check-<date>.json)")
    ap.add_argument("--phase", choices=["device"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    if a.phase == "device":
        return device_phase(a)
    for m in (a.models + "," + (a.serve_models or "")).split(","):
        if m.strip() and m.strip() not in MODELS:
            raise SystemExit(f"unknown model {m!r}; choose from {list(MODELS)}")
    bad = [f for f in a.formats.split(",") if f.strip() and f.strip() not in FORMATS]
    if bad:
        raise SystemExit(f"unknown format(s) {bad}; choose from {list(FORMATS)}")
    specs = service_specs(a.workers, a.env, a.service_cmd)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tpserve-gpu-check-") as work:
        rc = subprocess.run([sys.executable, "-m", "bench.gpu_check", *argv, "--phase", "device", "--workdir", work],
                            cwd=ROOT).returncode
        dev_file = Path(work) / "device.json"
        dev = json.loads(dev_file.read_text()) if dev_file.is_file() else {}
        if rc == NO_GPU:
            print("gpu-check: TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty). On a GPU "
                  "machine: install the CUDA wheels (pip install -c requirements.lock 'tensorflow[and-cuda]'; "
                  "make gpu-check does it when nvidia-smi is present) and check nvidia-smi; to try the script "
                  "on a CPU, pass --allow-cpu.", file=sys.stderr)
            return NO_GPU
        if rc != 0:
            print(f"gpu-check: the TensorFlow steps failed (exit {rc})", file=sys.stderr)
            return rc
        points = [] if a.skip_serve else serve_phase(a, dev, specs)
    result = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
                       "cpus": os.cpu_count(), "python": platform.python_version(), "argv": argv,
                       "seconds": round(time.time() - t0, 1), "loadavg_end": os.getloadavg(),
                       "nvidia_smi": _nvidia_smi()},
              "device": {k: v for k, v in dev.items() if k not in ("bodies", "serve_repos")}, "served": points}
    print()
    print("\n".join(tables(dev, points)))
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"gpu-check-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults written to {out}")
    failed = [c["check"] for c in dev.get("checks", []) if not c["ok"]]
    if failed:
        print(f"gpu-check: {len(failed)} check(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _nvidia_smi() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())

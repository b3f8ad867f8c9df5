"""Accounting under concurrency: every request sent gets exactly one answer (matched by request id),
and no row is ever swapped between concurrent requests that were batched together.

* fake model: random 1..20 rows per request (more than ``max_batch_size`` = 8, so some are split and
  reassembled), over ``/predict``, TF Serving ``:predict`` and KServe v2 (JSON and binary) at once;
  every row encodes ``[request id, row index, random]`` and is checked;
* the bundled digits model (``model_repository/digits``), when present: held-out digits images, each
  answer row compared to what an in-process ``layers.OfflinePredictor`` computes for that image.
"""
from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from bench.loadgen import Request, closed_loop
from service import Settings
from tests.service.fakes import PATIENCE_S, wait_until

from .conftest import ROOT, report
from .models import EchoModel

DIGITS = ROOT / "model_repository" / "digits"


def _request(kind: str, x: np.ndarray, model: str = "echo", input_name: str = "x") -> Request:
    if kind == "predict":
        return Request("POST", "/predict", orjson.dumps({"model": model, "inputs": {input_name: x.tolist()}}))
    if kind == "v1":
        return Request("POST", f"/v1/models/{model}:predict", orjson.dumps({"instances": x.tolist()}))
    t = {"name": input_name, "datatype": "FP32", "shape": list(x.shape)}
    if kind == "v2-json":
        t["data"] = x.reshape(-1).tolist()
        return Request("POST", f"/v2/models/{model}/infer", orjson.dumps({"inputs": [t]}))
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    t["parameters"] = {"binary_data_size": len(raw)}
    head = orjson.dumps({"inputs": [t], "outputs": [{"name": "logits" if model == "digits" else "y",
                                                     "parameters": {"binary_data": True}}]})
    return Request("POST", f"/v2/models/{model}/infer", head + raw,
                   {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))})


def _output(kind: str, body: bytes, headers: dict, name: str) -> np.ndarray:
    if kind == "predict":
        return np.asarray(orjson.loads(body)["outputs"][name], np.float32)
    if kind == "v1":
        preds = orjson.loads(body)["predictions"]
        return np.asarray([p[name] for p in preds] if isinstance(preds[0], dict) else preds, np.float32)
    if kind == "v2-json":
        out = next(o for o in orjson.loads(body)["outputs"] if o["name"] == name)
        return np.asarray(out["data"], np.float32).reshape(out["shape"])
    k = int(headers["inference-header-content-length"])
    meta = orjson.loads(body[:k])
    out = meta["outputs"][0]
    assert out["name"] == name
    return np.frombuffer(body[k:k + out["parameters"]["binary_data_size"]], "<f4").reshape(out["shape"])


KINDS = ["predict", "v1", "v2-json", "v2-binary"]


def test_every_request_answered_once_and_rows_never_swapped_fake_model(thread_server, request):
    gate = threading.Event()
    model = EchoModel("echo", compute_s=0.004, gate=gate)
    srv = thread_server([model], Settings(batching={"max_batch_size": 8}, max_body_bytes=1 << 20, poll_interval_s=0))
    rng = random.Random(11)
    plan: dict[int, tuple[str, np.ndarray]] = {}
    burst = 16        # the first requests (one per connection) have one row each

    def opener():
        # Hold the first batch until two one-row requests wait behind it: the next batch then holds rows of
        # several requests for sure, whatever the machine's speed (the swap check below needs such batches).
        wait_until(lambda: model.entered.is_set() and (srv.metric("tpserve_queue_rows", {"model": "echo", "version": "1"}) or 0) >= 2,
                   "two requests queued behind the held first batch")
        gate.set()

    holder = threading.Thread(target=opener, daemon=True)
    holder.start()

    def make(rid: int) -> Request:
        n = 1 if rid < burst else rng.randint(1, 20)
        kind = KINDS[rid % len(KINDS)]
        x = np.column_stack([np.full(n, rid), np.arange(n), np.asarray([rng.random() for _ in range(n)])])
        x = x.astype(np.float32)
        plan[rid] = (kind, x)
        return _request(kind, x)

    try:
        results = asyncio.run(closed_loop("127.0.0.1", srv.port, make, concurrency=burst, duration_s=2.0,
                                          keep_body=True, max_requests=3000, timeout_s=PATIENCE_S))
    finally:
        gate.set()
        holder.join(PATIENCE_S)
    assert sorted(r.id for r in results) == sorted(plan), "one answer per request sent, none extra"
    bad = [(r.id, r.status, r.error) for r in results if r.status != 200]
    assert bad == []
    rows = 0
    for r in results:
        kind, x = plan[r.id]
        y = _output(kind, r.body, r.headers, "y")
        np.testing.assert_array_equal(y, 2 * x, err_msg=f"request {r.id} ({kind})")
        rows += len(x)
    mixed = sum(1 for ids in model.batch_ids if len(ids) > 1)
    report(request, requests=len(results), rows=rows, batches=len(model.batch_sizes),
           batches_of_several_requests=mixed, mean_batch=round(float(np.mean(model.batch_sizes)), 2),
           split_requests=sum(1 for _, x in plan.values() if len(x) > 8))
    assert mixed >= 1, "no batch held rows of two requests: the row-swap check proved nothing"


@pytest.mark.skipif(not (DIGITS / "config.json").is_file(), reason="the bundled model is not in this checkout")
def test_rows_never_swapped_with_the_bundled_digits_model(thread_server, request):
    import layers
    import model_zoo
    from model_zoo.datasets import load_digits
    from service.repository import ModelRepository, find_weights

    settings = Settings(model_repository=DIGITS.parent, poll_interval_s=0, batching={"max_batch_size": 16},
                        intra_op_threads=1, inter_op_threads=1, max_body_bytes=4 << 20)
    srv = thread_server.real(ModelRepository(settings), settings)
    x_all = load_digits().heldout_x.astype(np.float32)                         # (360, 28, 28)
    versions = sorted(int(p.name) for p in DIGITS.iterdir() if p.name.isdigit())
    zoo = model_zoo.get(orjson.loads((DIGITS / "config.json").read_bytes())["architecture"])
    config = layers.PredictConfig(model=zoo.model, input_names=[i.name for i in zoo.inputs],
                                  output_names=[o.tensor for o in zoo.outputs],
                                  session_init=layers.SmartInit(find_weights(DIGITS / str(versions[-1]))))
    with layers.OfflinePredictor(config) as pred:
        outs = [pred(x_all[i:i + 40]) for i in range(0, len(x_all), 40)]
    names = [o.name for o in zoo.outputs]
    expected = np.concatenate([o[names.index("logits")] for o in outs])      # (360, 10) logits
    expected_prob = np.concatenate([o[names.index("prob")] for o in outs])
    assert len({tuple(np.round(e, 3)) for e in expected}) > 300        # distinct enough to spot a swap

    rng = random.Random(5)
    plan: dict[int, tuple[str, np.ndarray]] = {}

    def make(rid: int) -> Request:
        idx = np.asarray(rng.sample(range(len(x_all)), rng.randint(1, 8)))
        kind = KINDS[rid % len(KINDS)]
        plan[rid] = (kind, idx)
        return _request(kind, x_all[idx], model="digits", input_name="input")

    results = asyncio.run(closed_loop("127.0.0.1", srv.port, make, concurrency=8, duration_s=6.0, keep_body=True,
                                      max_requests=400, timeout_s=30))
    assert sorted(r.id for r in results) == sorted(plan)
    assert [(r.id, r.status, r.error) for r in results if r.status != 200] == []
    worst, rows = 0.0, 0
    for r in results:
        kind, idx = plan[r.id]
        got = _output(kind, r.body, r.headers, "logits")
        assert got.shape == (len(idx), 10)
        if kind != "v2-binary":
            np.testing.assert_allclose(_output(kind, r.body, r.headers, "prob"), expected_prob[idx], atol=1e-5)
        for row, i in zip(got, idx, strict=True):
            d = np.abs(expected - row).max(axis=1)
            assert int(np.argmin(d)) == i or d[i] <= d.min() + 1e-6, f"request {r.id}: row of image {i} swapped"
            worst = max(worst, float(d[i]))
            rows += 1
    batch_count = srv.metric("tpserve_batch_size_count", {"model": "digits", "version": "1"})
    batch_sum = srv.metric("tpserve_batch_size_sum", {"model": "digits", "version": "1"})
    report(request, requests=len(results), rows=rows, max_abs_logit_diff=f"{worst:.2e}",
           mean_batch=round(batch_sum / batch_count, 2) if batch_count else None)
    assert worst < 1e-3
    assert Path(DIGITS).is_dir()

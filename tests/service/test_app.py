"""The HTTP API over a real uvicorn server, with small pure-Python models (see fakes.py)."""
from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app

from .fakes import PATIENCE_S, FakeRepository, doubler, pixels, wait_until
from .server import serve


def wait_ready(client, timeout_s=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r
        if all("LOADING" not in x and "scanned" not in x for x in r.json()["reasons"]):
            return r
        time.sleep(0.02)
    raise TimeoutError("server never became ready")


@pytest.fixture
def make_server():
    stack = []

    def make(models, settings=None, **repo_kw):
        registry = CollectorRegistry()
        app = create_app(settings or Settings(max_body_bytes=64 * 1024), registry=registry,
                         repository=FakeRepository(models, **repo_kw))
        cm = serve(app)
        srv = cm.__enter__()
        stack.append(cm)
        client = httpx.Client(base_url=srv.url, timeout=30)
        stack.append(client)
        wait_ready(client)
        return client, registry

    yield make
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def two_models(make_server):
    return make_server([doubler(), pixels()])


def post(client, body, **kw):
    return client.post("/predict", json=body, **kw)


def test_predict_returns_model_outputs_and_version(make_server):
    client, _ = make_server([doubler()])
    r = post(client, {"inputs": [[1, 2, 3], [4, 5, 6]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "double" and body["version"] == "1"
    assert body["outputs"]["y"] == [[2, 4, 6], [8, 10, 12]]
    assert body["outputs"]["sum"] == [6, 15]


def test_outputs_subset_and_named_inputs(two_models):
    client, _ = two_models
    r = post(client, {"model": "double", "inputs": {"x": [[1, 1, 1]]}, "outputs": ["sum"]})
    assert r.status_code == 200
    assert r.json()["outputs"] == {"sum": [3.0]}


def test_models_lists_signatures_labels_and_state(two_models):
    client, _ = two_models
    models = {m["name"]: m for m in client.get("/models").json()}
    assert models["pixels"]["state"] == "READY"
    assert models["pixels"]["inputs"] == [{"name": "image", "dtype": "uint8", "shape": [-1, 2, 2], "range": [0, 255]}]
    assert models["pixels"]["labels"] == ["a", "b"]
    assert models["double"]["outputs"][0]["name"] == "y"


@pytest.mark.parametrize("body, status, words", [
    ({"model": "nope", "inputs": [[1, 2, 3]]}, 404, ["unknown model 'nope'", "double"]),
    ({"model": "double", "inputs": {"z": [[1, 2, 3]]}}, 400, ["unknown input(s) ['z']", "['x']"]),
    ({"model": "double", "inputs": [[1, 2, 3]], "outputs": ["nope"]}, 400, ["unknown output(s) ['nope']", "'y'"]),
    ({"model": "double", "inputs": [[1, 2]]}, 400, ["shape [1, 2]", "expected [N, 3]"]),
    ({"model": "double", "inputs": [[1, "a", 3]]}, 400, ["non-numeric value 'a'"]),
    ({"model": "double", "inputs": [[1, 2, 3], [1, 2]]}, 400, ["ragged list"]),
    ({"model": "double", "inputs": []}, 400, ["empty"]),
    ({"model": "double", "inputs": [[True, False, True]]}, 400, ["booleans"]),
    ({"model": "pixels", "inputs": [[[1, 2], [3, 256]]]}, 400, ["uint8 values in [0, 255]", "[1, 256]"]),
    ({"model": "pixels", "inputs": [[[1, 2], [3, -1]]]}, 400, ["uint8 values in [0, 255]"]),
    ({"model": "pixels", "inputs": [[[1, 2], [3, 1.5]]]}, 400, ["fractional"]),
    ({"model": "double"}, 400, ["missing 'inputs'"]),
    ({"model": "double", "inputs": [[1, 2, 3]], "extra": 1}, 400, ["unknown field(s) ['extra']"]),
    ({"model": "double", "inputs": "abc"}, 400, ["nested list"]),
    ({"inputs": [[1, 2, 3]]}, 404, ["several models are served"]),
])
def test_bad_input_gets_4xx_naming_the_problem(two_models, body, status, words):
    client, _ = two_models
    r = post(client, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    for w in words:
        assert w in err, (w, err)


def test_nan_and_inf_are_refused_for_uint8_inputs(two_models):
    client, _ = two_models
    for bad in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"model": "pixels", "inputs": [[[1, 2], [3, ' + bad + b']]]}'
        r = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert "NaN and Infinity are not valid JSON numbers" in r.json()["error"]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_are_refused_by_input_validation(value):
    from service.model import TensorSpec
    from service.validation import InvalidRequest, check_array

    spec = TensorSpec("image", np.dtype("uint8"), (2,))
    with pytest.raises(InvalidRequest, match="NaN or Inf") as info:
        check_array(spec, np.array([[1.0, value]]), "inputs.image")
    assert info.value.field == "inputs.image"


def test_malformed_json_and_non_object_bodies(two_models):
    client, _ = two_models
    r = client.post("/predict", content=b'{"inputs": [1, 2', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = client.post("/predict", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]
    r = client.post("/predict", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "empty request body" in r.json()["error"]


def test_body_above_limit_gets_413_with_the_limit(two_models):
    client, _ = two_models
    big = {"model": "double", "inputs": [[1.5, 2.5, 3.5]] * 10000}
    r = post(client, big)
    assert r.status_code == 413
    assert "65536 bytes" in r.json()["error"]


def test_large_request_is_split_into_batches_and_reassembled(make_server):
    model = doubler()
    client, _ = make_server([model], Settings(batching={"max_batch_size": 2}))
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    r = post(client, {"inputs": x.tolist()})
    assert r.status_code == 200
    np.testing.assert_array_equal(r.json()["outputs"]["y"], x * 2)
    assert model.batch_sizes[-3:] == [2, 2, 1]


def _blocked_then(client, model, fn):
    """Hold the model's gate while ``fn`` runs, with one request occupying the replica (``fn`` starts
    once that request's batch is inside the model, not after some sleep)."""
    model.gate.clear()
    model.entered.clear()
    first = {}
    t = threading.Thread(target=lambda: first.setdefault("r", post(client, {"inputs": [[0, 0, 0]]})))
    t.start()
    try:
        assert model.entered.wait(PATIENCE_S), "the first request never reached the model"
        return fn()
    finally:
        model.gate.set()
        t.join(PATIENCE_S)
        assert first["r"].status_code == 200


def test_full_queue_gets_429_with_retry_after(make_server):
    model = doubler()
    client, registry = make_server([model], Settings(batching={"max_batch_size": 1, "max_queue_size": 2}))

    def fill_and_overflow():
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(client, {"inputs": [[1, 1, 1]]})))
                   for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: registry.get_sample_value("tpserve_queue_rows", {"model": "double", "version": "1"}) == 2,
                   "both requests to be queued behind the held batch")
        r = post(client, {"inputs": [[1, 1, 1]]})
        return r, threads, results

    r, threads, results = _blocked_then(client, model, fill_and_overflow)
    for t in threads:
        t.join(PATIENCE_S)
    assert r.status_code == 429
    # No batch has finished yet, so there is no measured service rate: the estimate is its 1 s floor,
    # and the header and the message say the same (test_batcher checks the estimate from a measured rate).
    assert r.headers["retry-after"] == "1"
    assert "queue full: 2 rows waiting, limit 2; retry in 1 s" in r.json()["error"]
    assert [x.status_code for x in results] == [200, 200]
    assert registry.get_sample_value("tpserve_rejected_total", {"model": "double", "reason": "queue_full"}) == 1


def test_request_past_its_deadline_gets_504_and_is_not_computed(make_server):
    model = doubler()
    client, _ = make_server([model])
    r = _blocked_then(client, model, lambda: post(client, {"inputs": [[9, 9, 9]], "timeout_ms": 50}))
    assert r.status_code == 504
    assert "deadline" in r.json()["error"]
    # The queue is FIFO: once a later request has been answered, the expired one can no longer run.
    assert post(client, {"inputs": [[7, 7, 7]]}).status_code == 200
    assert not any((s == 9).any() for s in model.seen)
    assert any((s == 7).any() for s in model.seen)
    r = _blocked_then(client, model, lambda: client.post("/predict", json={"inputs": [[8, 8, 8]]},
                                                         headers={"X-Request-Timeout-Ms": "50"}))
    assert r.status_code == 504


def test_bad_timeout_values_are_400(make_server):
    client, _ = make_server([doubler()])
    assert post(client, {"inputs": [[1, 2, 3]], "timeout_ms": -5}).status_code == 400
    r = client.post("/predict", json={"inputs": [[1, 2, 3]]}, headers={"X-Request-Timeout-Ms": "soon"})
    assert r.status_code == 400 and "X-Request-Timeout-Ms" in r.json()["error"]


def test_failing_batch_gets_500_and_the_next_batch_succeeds(make_server):
    client, registry = make_server([doubler(fail_marker=13)])
    r = post(client, {"inputs": [[13, 0, 0]]})
    assert r.status_code == 500
    assert "RuntimeError: injected failure" in r.json()["error"]
    r = post(client, {"inputs": [[1, 2, 3]]})
    assert r.status_code == 200
    assert registry.get_sample_value("tpserve_requests_total",
                                     {"model": "double", "route": "predict", "code": "500"}) == 1


def test_a_model_that_fails_to_load_does_not_stop_the_others(make_server):
    client, registry = make_server([doubler()], fail_load=["broken"],
                                   broken={"badconfig": "unknown architecture 'nope'"})
    assert post(client, {"model": "double", "inputs": [[1, 2, 3]]}).status_code == 200
    models = {m["name"]: m for m in client.get("/models").json()}
    assert models["broken"]["state"] == "FAILED" and "corrupt" in models["broken"]["error"]
    assert models["badconfig"]["state"] == "FAILED"
    r = post(client, {"model": "broken", "inputs": [[1, 2, 3]]})
    assert r.status_code == 503 and "FAILED" in r.json()["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert any("broken" in x for x in ready.json()["reasons"])
    assert registry.get_sample_value("tpserve_model_load_failures_total", {"model": "broken"}) == 1


def test_readiness_is_503_until_models_are_loaded_and_healthz_is_up_meanwhile():
    gate = threading.Event()
    repo = FakeRepository([doubler()], load_gate=gate)
    app = create_app(Settings(), registry=CollectorRegistry(), repository=repo)
    with serve(app) as srv, httpx.Client(base_url=srv.url) as client:
        try:
            assert repo.loading.wait(PATIENCE_S), "the model load never started"
            assert client.get("/healthz").status_code == 200
            r = client.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "not ready"
            assert post(client, {"inputs": [[1, 2, 3]]}).status_code == 503
        finally:
            gate.set()          # the load finishes only now, whatever the machine's speed
        wait_ready(client)
        assert client.get("/readyz").json() == {"status": "ready", "reasons": []}


def test_metrics_expose_requests_batches_and_model_info(make_server):
    client, registry = make_server([doubler()])
    for _ in range(3):
        assert post(client, {"inputs": [[1, 2, 3]]}).status_code == 200
    text = client.get("/metrics").text
    for name in ("tpserve_requests_total", "tpserve_request_duration_seconds", "tpserve_queue_duration_seconds",
                 "tpserve_inference_duration_seconds", "tpserve_batch_size", "tpserve_queue_rows",
                 "tpserve_model_info", "tpserve_model_load_seconds"):
        assert name in text, name
    assert registry.get_sample_value("tpserve_requests_total",
                                     {"model": "double", "route": "predict", "code": "200"}) == 3
    assert registry.get_sample_value("tpserve_batch_size_count", {"model": "double", "version": "1"}) == 3
    assert registry.get_sample_value("tpserve_model_info", {"model": "double", "version": "1", "state": "READY"}) == 1


def test_openapi_docs_describe_predict(make_server):
    client, _ = make_server([doubler()])
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"]
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "inputs" in body["properties"]
    assert client.get("/docs").status_code == 200


def test_healthz_fails_when_a_batch_hangs_past_the_liveness_limit(make_server):
    model = doubler()
    client, _ = make_server([model], Settings(liveness_stuck_batch_s=0.3, stuck_batch_timeout_s=0.2))

    def failing_healthz():
        r = client.get("/healthz")
        return r if r.status_code == 503 else None

    def check():
        r = wait_until(failing_healthz, "/healthz to fail while the batch hangs past liveness_stuck_batch_s")
        assert r.json()["status"] == "stuck"
        assert "'double'" in r.json()["reason"]
        assert client.get("/readyz").status_code == 503

    _blocked_then(client, model, check)
    assert client.get("/healthz").json() == {"status": "alive", "reason": None}


def _npy(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_npy_body_runs_the_batch_without_json(make_server):
    client, _ = make_server([doubler()])
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    r = client.post("/predict?output=y", content=_npy(x), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(r.json()["outputs"]["y"], x * 2)
    assert list(r.json()["outputs"]) == ["y"]


@pytest.mark.parametrize("body, words", [
    (b"not an npy file", "not a .npy file"),
    (None, "must hold a numeric array, got dtype object"),   # an object array: would need pickle
    (_npy(np.zeros((2, 4), np.float32)), "expected [N, 3]"),
])
def test_bad_npy_bodies_are_refused(make_server, body, words):
    client, _ = make_server([doubler()])
    if body is None:
        body = _npy(np.array([{"a": 1}, None], dtype=object))
    r = client.post("/predict", content=body, headers={"content-type": "application/x-npy"})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]

"""End to end with the real bundled model: a real uvicorn server on 127.0.0.1, real TensorFlow."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from service import Settings, create_app

from .realmodel import REPO, heldout, reference_outputs
from .server import serve
from .test_app import wait_ready


@pytest.fixture(scope="module")
def live():
    registry = CollectorRegistry()
    app = create_app(Settings(model_repository=REPO, intra_op_threads=2, inter_op_threads=2), registry=registry)
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        r = wait_ready(client, timeout_s=120)
        assert r.status_code == 200, r.text
        yield srv, client, registry


def test_heldout_digits_over_http_match_the_in_process_predictor(live):
    _, client, _ = live
    x, y = heldout()
    classes = []
    for start in range(0, len(x), 60):
        r = client.post("/predict", json={"inputs": x[start:start + 60].tolist(), "outputs": ["prob"]})
        assert r.status_code == 200, r.text
        classes.append(np.argmax(np.array(r.json()["outputs"]["prob"]), axis=1))
    classes = np.concatenate(classes)
    ref = np.argmax(reference_outputs(x)["prob"], axis=1)
    np.testing.assert_array_equal(classes, ref)
    accuracy = float((classes == y).mean())
    print(f"held-out accuracy over HTTP: {accuracy:.4f} on {len(y)} images")
    assert accuracy >= 0.97


def test_batching_engages_with_64_concurrent_clients_and_rows_stay_paired(live):
    _, client, registry = live
    x, _ = heldout()
    before_sum = registry.get_sample_value("tpserve_batch_size_sum", {"model": "digits", "version": "1"}) or 0
    before_n = registry.get_sample_value("tpserve_batch_size_count", {"model": "digits", "version": "1"}) or 0
    rng = np.random.default_rng(7)
    jobs = [rng.choice(len(x), size=int(rng.integers(1, 4)), replace=False) for _ in range(256)]

    def send(idx):
        r = client.post("/predict", json={"inputs": x[idx].tolist()})
        assert r.status_code == 200, r.text
        return idx, np.array(r.json()["outputs"]["prob"], dtype=np.float32)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(send, jobs))
    ref = reference_outputs(x)["prob"]
    for idx, prob in results:
        np.testing.assert_allclose(prob, ref[idx], rtol=1e-4, atol=1e-5)
    rows = registry.get_sample_value("tpserve_batch_size_sum", {"model": "digits", "version": "1"}) - before_sum
    batches = registry.get_sample_value("tpserve_batch_size_count", {"model": "digits", "version": "1"}) - before_n
    assert rows == sum(len(j) for j in jobs)
    print(f"64 clients: {len(jobs)} requests, {rows:.0f} rows in {batches:.0f} batches (mean {rows / batches:.1f})")
    assert batches < len(jobs), "no request was batched with another"
    le1 = registry.get_sample_value("tpserve_batch_size_bucket", {"model": "digits", "version": "1", "le": "1.0"})
    total = registry.get_sample_value("tpserve_batch_size_count", {"model": "digits", "version": "1"})
    assert total - le1 > 0, "the batch-size histogram shows no batch larger than 1"


def test_tfserving_predict_matches_predictor(live):
    _, client, _ = live
    x, _ = heldout()
    r = client.post("/v1/models/digits:predict", json={"instances": x[:5].tolist()})
    assert r.status_code == 200, r.text
    prob = np.array([p["prob"] for p in r.json()["predictions"]])
    np.testing.assert_allclose(prob, reference_outputs(x[:5])["prob"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_v2_tritonclient_matches_predictor(live, binary):
    srv, _, _ = live
    import tritonclient.http as th

    x, _ = heldout()
    tc = th.InferenceServerClient(f"127.0.0.1:{srv.port}")
    try:
        inp = th.InferInput("input", [8, 28, 28], "FP32")
        inp.set_data_from_numpy(x[:8], binary_data=binary)
        res = tc.infer("digits", [inp], outputs=[th.InferRequestedOutput("prob", binary_data=binary)])
        np.testing.assert_allclose(res.as_numpy("prob"), reference_outputs(x[:8])["prob"], rtol=1e-4, atol=1e-5)
    finally:
        tc.close()


def test_uploaded_png_is_preprocessed_like_the_zoo_entry(live):
    _, client, _ = live
    x, y = heldout()
    img = (x[3] * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).convert("RGB").save(buf, format="PNG")
    r = client.post("/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    top = r.json()["top_k"]
    ref = reference_outputs((img.astype(np.float32) / 255.0)[None])["prob"][0]
    assert top[0]["label"] == str(int(np.argmax(ref)))
    assert top[0]["score"] == pytest.approx(float(ref.max()), rel=1e-3)
    r = client.post("/v1/models/digits:classify", files={"image": ("d.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0][0][0] == top[0]["label"]


def test_models_endpoint_reports_the_bundled_model(live):
    _, client, _ = live
    (m,) = client.get("/models").json()
    assert m["name"] == "digits" and m["state"] == "READY" and m["architecture"] == "mnist-convnet"
    assert m["inputs"][0]["shape"] == [-1, 28, 28] and m["labels"] == [str(i) for i in range(10)]

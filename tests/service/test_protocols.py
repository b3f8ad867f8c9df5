"""TF Serving REST, KServe v2 (via the official tritonclient), image upload and API keys, over a
real uvicorn server with small pure-Python models (the real-model versions are in test_e2e.py)."""
from __future__ import annotations

import base64
import io
import logging

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from service import Settings, create_app

from .fakes import FakeRepository, doubler, pixels
from .server import serve
from .test_app import wait_ready


@pytest.fixture(scope="module")
def server():
    app = create_app(Settings(max_body_bytes=256 * 1024, max_image_pixels=10_000), registry=CollectorRegistry(),
                     repository=FakeRepository([doubler(), pixels()]))
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        wait_ready(client)
        yield srv, client


def png_bytes(arr, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


# ---------------------------------------------------------------- TF Serving REST
def test_tfserving_status_and_metadata(server):
    _, client = server
    st = client.get("/v1/models/double").json()
    assert st["model_version_status"][0]["state"] == "AVAILABLE"
    assert st["model_version_status"][0]["version"] == "1"
    md = client.get("/v1/models/double/metadata").json()
    sig = md["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert client.get("/v1/models/double/versions/1").status_code == 200
    assert client.get("/v1/models/double/versions/7").status_code == 404


def test_tfserving_predict_row_format(server):
    _, client = server
    r = client.post("/v1/models/double:predict", json={"instances": [[1, 2, 3], [4, 5, 6]]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert preds == [{"y": [2, 4, 6], "sum": 6}, {"y": [8, 10, 12], "sum": 15}]


def test_tfserving_predict_columnar_format_and_pinned_version(server):
    _, client = server
    r = client.post("/v1/models/double/versions/1:predict", json={"inputs": {"x": [[1, 1, 1]]}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"y": [[2, 2, 2]], "sum": [3]}
    r = client.post("/v1/models/double/versions/2:predict", json={"inputs": {"x": [[1, 1, 1]]}})
    assert r.status_code == 404 and "serving version 1" in r.json()["error"]


def test_tfserving_errors_are_error_bodies(server):
    _, client = server
    r = client.post("/v1/models/double:predict", json={"instances": [[1, 2]]})
    assert r.status_code == 400 and "expected [N, 3]" in r.json()["error"]
    r = client.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 404 and "error" in r.json()
    r = client.post("/v1/models/double:explode", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 404 and ":predict" in r.json()["error"]


def test_tfserving_classify_returns_top_k_labels(server):
    _, client = server
    r = client.post("/v1/models/pixels:classify", json={"instances": [[[250, 250], [250, 250]]], "top_k": 2})
    assert r.status_code == 200, r.text
    (row,) = r.json()["results"]
    assert row[0][0] == "b" and row[0][1] == pytest.approx(250 / 255, rel=1e-5)
    assert row[1][0] == "a"


def test_tfserving_b64_image_instances(server):
    _, client = server
    img = np.full((4, 4, 3), 10, np.uint8)
    body = {"instances": [{"b64": base64.b64encode(png_bytes(img)).decode()}]}
    r = client.post("/v1/models/pixels:predict", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["mean"] == pytest.approx(10.0)


# ---------------------------------------------------------------- KServe v2 via tritonclient
def test_v2_health_and_metadata(server):
    srv, client = server
    import tritonclient.http as th

    tc = th.InferenceServerClient(f"127.0.0.1:{srv.port}")
    try:
        assert tc.is_server_live() and tc.is_server_ready()
        assert tc.is_model_ready("double")
        md = tc.get_model_metadata("double")
        assert md["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
        assert {o["name"] for o in md["outputs"]} == {"y", "sum"}
    finally:
        tc.close()


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, True), (True, False), (False, True)])
def test_v2_infer_json_and_binary_tensors(server, binary_in, binary_out):
    srv, _ = server
    import tritonclient.http as th

    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    tc = th.InferenceServerClient(f"127.0.0.1:{srv.port}")
    try:
        inp = th.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary_in)
        outs = [th.InferRequestedOutput("y", binary_data=binary_out), th.InferRequestedOutput("sum",
                                                                                             binary_data=binary_out)]
        res = tc.infer("double", [inp], outputs=outs)
        np.testing.assert_allclose(res.as_numpy("y"), x * 2, rtol=1e-6)
        np.testing.assert_allclose(res.as_numpy("sum"), x.sum(axis=1), rtol=1e-6)
        res = tc.infer("double", [inp], outputs=outs, model_version="1")
        np.testing.assert_allclose(res.as_numpy("y"), x * 2, rtol=1e-6)
    finally:
        tc.close()


def test_v2_uint8_binary_input(server):
    srv, _ = server
    import tritonclient.http as th

    img = np.array([[[0, 255], [255, 255]]], np.uint8)
    tc = th.InferenceServerClient(f"127.0.0.1:{srv.port}")
    try:
        inp = th.InferInput("image", [1, 2, 2], "UINT8")
        inp.set_data_from_numpy(img, binary_data=True)
        res = tc.infer("pixels", [inp])
        np.testing.assert_allclose(res.as_numpy("mean"), [191.25], rtol=1e-6)
    finally:
        tc.close()


def _v2_binary(client, header: dict, data: bytes, header_len=None):
    import orjson

    head = orjson.dumps(header)
    return client.post("/v2/models/double/infer", content=head + data, headers={
        "Inference-Header-Content-Length": str(len(head) if header_len is None else header_len),
        "content-type": "application/octet-stream"})


def test_v2_binary_sizes_that_lie_are_rejected(server):
    _, client = server
    x = np.ones((2, 3), np.float32).tobytes()
    hdr = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 20}}]}
    r = _v2_binary(client, hdr, x)
    assert r.status_code == 400 and "does not match shape" in r.json()["error"]
    hdr["inputs"][0]["parameters"]["binary_data_size"] = 24
    r = _v2_binary(client, hdr, x[:12])
    assert r.status_code == 400 and "holds 12 bytes" in r.json()["error"]
    r = _v2_binary(client, {"inputs": []}, b"", header_len=10_000)
    assert r.status_code == 400 and "does not fit" in r.json()["error"]
    huge = {"inputs": [{"name": "x", "shape": [10 ** 9, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    r = client.post("/v2/models/double/infer", json=huge)
    assert r.status_code == 400


def test_v2_json_errors_name_the_field(server):
    _, client = server
    r = client.post("/v2/models/double/infer", json={"inputs": [{"name": "q", "shape": [1, 3], "datatype": "FP32",
                                                                  "data": [1, 2, 3]}]})
    assert r.status_code == 400 and r.json()["field"] == "inputs[0].name"
    r = client.post("/v2/models/double/infer", json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                                  "data": [1, 2]}]})
    assert r.status_code == 400 and "needs 3" in r.json()["error"]


# ---------------------------------------------------------------- image upload
def test_predict_accepts_raw_png_and_multipart(server):
    _, client = server
    img = np.zeros((8, 8, 3), np.uint8)
    img[:2, :2, 0] = 200
    r = client.post("/predict?model=pixels&top_k=1", content=png_bytes(img), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["top_k"] == [{"label": "b", "index": 1, "score": pytest.approx(200 / 255, rel=1e-5)}]
    bright = np.full((8, 8, 3), 200, np.uint8)
    r = client.post("/predict?model=pixels", files={"image": ("x.jpg", png_bytes(bright, "JPEG"), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert [t["label"] for t in r.json()["top_k"]] == ["b", "a"]
    r = client.post("/v1/models/pixels:classify", content=png_bytes(img), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["results"][0][0][0] == "b"


def test_bad_images_get_4xx_with_a_reason(server):
    _, client = server
    post = lambda data, ct="image/png": client.post("/predict?model=pixels", content=data,  # noqa: E731
                                                    headers={"content-type": ct})
    r = post(b"\x89PNG\r\n\x1a\n garbage")
    assert r.status_code == 400 and "could not be decoded" in r.json()["error"]
    r = post(png_bytes(np.zeros((120, 120, 3), np.uint8)))          # 14,400 px > 10,000 limit
    assert r.status_code == 413 and "10000" in r.json()["error"]
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    r = post(gif.getvalue(), "image/gif")
    assert r.status_code == 400      # not an accepted content type: parsed as JSON and refused
    r = post(gif.getvalue(), "image/png")
    assert r.status_code == 415 and "GIF" in r.json()["error"]
    r = client.post("/predict?model=double", content=png_bytes(np.zeros((4, 4, 3), np.uint8)),
                    headers={"content-type": "image/png"})
    assert r.status_code == 400 and "does not take images" in r.json()["error"]


def test_decompression_bomb_is_refused_from_its_header():
    """A PNG declaring 100k x 100k pixels (10 G) is refused before any pixel is decoded."""
    import struct
    import zlib

    from service.errors import PayloadTooLarge
    from service.images import decode_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(PayloadTooLarge):
        decode_image(bomb, 40_000_000)


# ---------------------------------------------------------------- API keys
def test_api_keys_401_403_200_and_open_paths(caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-key-value"
    app = create_app(Settings(api_keys=[secret, "other-key"]), registry=CollectorRegistry(),
                     repository=FakeRepository([doubler()]))
    with serve(app) as srv, httpx.Client(base_url=srv.url) as client:
        wait_ready(client)
        body = {"inputs": [[1, 2, 3]]}
        r = client.post("/predict", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = client.post("/predict", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403
        r = client.post("/predict", json=body, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200
        r = client.post("/v2/repository/models/double/load", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        for path in ("/healthz", "/readyz", "/metrics", "/v2/health/live"):
            assert client.get(path).status_code == 200, path
    assert secret not in caplog.text
    assert "s3cret" not in repr(Settings(api_keys=[secret]))


def test_v2_integer_tensors_refuse_fractions_and_out_of_range_values(server):
    _, client = server
    for data in ([1, 2, 3.5, 4], [1, 2, 3, 256]):
        r = client.post("/v2/models/pixels/infer", json={"inputs": [
            {"name": "image", "shape": [1, 2, 2], "datatype": "UINT8", "data": data}]})
        assert r.status_code == 400, r.text
        assert "integers in [0, 255]" in r.json()["error"]
    r = client.post("/v2/models/pixels/infer", json={"inputs": [
        {"name": "image", "shape": [1, 2, 2], "datatype": "UINT8", "data": [0, 255, 255, 255]}]})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [191.25]

"""One request pipeline (service.pipeline): the same validation, with the same answers, in every codec.

A model declares its input range [0, 1]: a value outside it is a 400 naming the row and the value in
/predict JSON and .npy, TF Serving rows and columns, KServe v2 JSON and binary; ``validate_range: false``
in its config lets the same request through; strings and booleans are never turned into numbers.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import orjson
import pytest
from PIL import Image

from service.errors import InvalidRequest
from service.model import TensorSpec
from service.validation import check_batch

from .fakes import FakeModel
from .test_app import make_server  # noqa: F401  (the shared real-server fixture)

F32 = np.dtype("float32")
RANGE = (0.0, 1.0)


def affine(x: np.ndarray) -> np.ndarray:
    """The fake model's function, the NumPy reference for its answers."""
    return x.astype(np.float32) * np.float32(2) + np.float32(1)


def ranged(name="ranged"):
    """``y = 2x + 1`` on rows of 3 float32 values declared to lie in [0, 1]; an uploaded image is the red
    channel of the first 3 pixels of its top row, 0-255 mapped to [0, 1]."""
    m = FakeModel(name, [TensorSpec("x", F32, (3,), RANGE)], lambda d: {"y": affine(d["x"])}, labels=["a", "b", "c"])
    m.preprocess_image = lambda rgb: rgb[0, :3, 0].astype(np.float32) / np.float32(255)
    return m


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _v2_tensor(x: np.ndarray, datatype="FP32") -> dict:
    return {"name": "x", "shape": list(x.shape), "datatype": datatype, "data": x.reshape(-1).tolist()}


def _v2_binary(x: np.ndarray, datatype="FP32") -> tuple[bytes, dict]:
    data = x.astype(x.dtype.newbyteorder("<")).tobytes()
    head = orjson.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": datatype,
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    return head + data, {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"}


def send(client, codec: str, model: str, x: np.ndarray):
    """``x`` (rows of 3) to ``model`` in ``codec``'s wire format."""
    if codec == "predict-json":
        return client.post("/predict", json={"model": model, "inputs": x.tolist()})
    if codec == "predict-npy":
        return client.post(f"/predict?model={model}", content=_npy(x), headers={"content-type": "application/x-npy"})
    if codec == "v1-rows":
        return client.post(f"/v1/models/{model}:predict", json={"instances": x.tolist()})
    if codec == "v1-columns":
        return client.post(f"/v1/models/{model}:predict", json={"inputs": {"x": x.tolist()}})
    if codec == "v2-json":
        return client.post(f"/v2/models/{model}/infer", json={"inputs": [_v2_tensor(x)]})
    body, headers = _v2_binary(x)
    return client.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def answer(codec: str, r) -> np.ndarray:
    """The output ``y`` from a 200 answer in ``codec``'s wire format."""
    if codec.startswith("predict"):
        return np.array(r.json()["outputs"]["y"], np.float32)
    if codec == "v1-rows":
        return np.array(r.json()["predictions"], np.float32)
    if codec == "v1-columns":
        return np.array(r.json()["outputs"], np.float32)
    if codec == "v2-json":
        out = r.json()["outputs"][0]
        return np.array(out["data"], np.float32).reshape(out["shape"])
    n = int(r.headers["inference-header-content-length"])
    out = json.loads(r.content[:n])["outputs"][0]
    return np.frombuffer(r.content[n:], "<f4").reshape(out["shape"])


CODECS = ["predict-json", "predict-npy", "v1-rows", "v1-columns", "v2-json", "v2-binary"]
# where each codec's error says the input is, and the route label its requests are counted under
FIELD = {"predict-json": "inputs.x", "predict-npy": "x", "v1-rows": "instances.x", "v1-columns": "inputs.x",
         "v2-json": "inputs[0]", "v2-binary": "inputs[0]"}
ROUTE = {"predict-json": "predict", "predict-npy": "predict", "v1-rows": "v1:predict", "v1-columns": "v1:predict",
         "v2-json": "v2:infer", "v2-binary": "v2:infer"}

# row 1 is the first out of range (1.5); row 2 is out too (-0.5)
OUT_OF_RANGE = np.array([[0.0, 0.5, 1.0], [0.25, 1.5, 0.0], [-0.5, 0.0, 0.0]], np.float32)


@pytest.mark.parametrize("codec", CODECS)
def test_a_value_outside_the_declared_range_is_a_400_naming_row_and_value(make_server, codec):  # noqa: F811
    model = ranged()
    client, registry = make_server([model])
    r = send(client, codec, "ranged", OUT_OF_RANGE)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == FIELD[codec]
    assert body["received"] == {"row": 1, "value": 1.5} and body["expected"] == [0.0, 1.0]
    assert "input 'x': row 1 holds 1.5, outside the input's declared range [0, 1]" in body["error"]
    assert "validate_range" in body["error"]
    assert model.seen == []                                     # refused before it reached the model
    assert registry.get_sample_value("tpserve_requests_total",
                                     {"model": "ranged", "route": ROUTE[codec], "code": "400"}) == 1


@pytest.mark.parametrize("codec", CODECS)
def test_validate_range_false_lets_the_same_request_through(make_server, codec):  # noqa: F811
    model = ranged("open")
    client, _ = make_server([model], unchecked_ranges=["open"])
    r = send(client, codec, "open", OUT_OF_RANGE)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(answer(codec, r), affine(OUT_OF_RANGE))
    np.testing.assert_array_equal(model.seen[0], OUT_OF_RANGE)      # the values as sent, unclipped


@pytest.mark.parametrize("codec", CODECS)
def test_values_on_the_bounds_are_in_range(make_server, codec):  # noqa: F811
    client, _ = make_server([ranged()])
    x = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.125]], np.float32)
    r = send(client, codec, "ranged", x)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(answer(codec, r), affine(x))


def test_the_first_offending_row_is_named_below_the_range_too():
    spec = TensorSpec("x", F32, (3,), RANGE)
    x = np.array([[0, 0, 0], [0, 0, 0], [0, -0.25, 2], [3, 0, 0]], np.float64)
    with pytest.raises(InvalidRequest, match=r"row 2 holds -0.25") as info:
        check_batch([spec], {"x": x}, 8)
    assert info.value.field == "inputs.x" and info.value.received == {"row": 2, "value": -0.25}


def test_integer_inputs_are_range_checked_and_the_check_can_be_skipped():
    spec = TensorSpec("level", np.dtype("uint8"), (2,), (0, 9))
    x = np.array([[1, 9], [10, 0]], np.int64)
    with pytest.raises(InvalidRequest, match=r"row 1 holds 10, .* range \[0, 9\]"):
        check_batch([spec], {"level": x}, 8)
    np.testing.assert_array_equal(check_batch([spec], {"level": x}, 8, check_range=False)["level"], x)
    assert check_batch([spec], {"level": x}, 8, preprocessed=["level"])["level"] is x     # made by the server


def _png(red_top_row: list[int]) -> bytes:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, :3, 0] = red_top_row
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_uploaded_images_are_preprocessed_into_the_range_and_served(make_server):  # noqa: F811
    client, _ = make_server([ranged()])
    png = _png([0, 255, 51])
    x = np.array([[0, 255, 51]], np.float32) / np.float32(255)
    r = client.post("/predict?model=ranged&top_k=2", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert [(t["label"], t["score"]) for t in r.json()["top_k"]] == [("b", 3.0), ("c", pytest.approx(affine(x)[0, 2]))]
    r = client.post("/v1/models/ranged:predict", json={"instances": [{"b64": base64.b64encode(png).decode()}]})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), affine(x))


def test_b64_images_and_nested_lists_do_not_mix_in_one_input(make_server):  # noqa: F811
    model = ranged()
    client, _ = make_server([model])
    image = {"b64": base64.b64encode(_png([0, 255, 51])).decode()}
    r = client.post("/v1/models/ranged:predict", json={"instances": [image, [0, "1", 0]]})
    assert r.status_code == 400 and r.json()["field"] == "instances", r.text
    assert model.seen == []


NOT_NUMBERS = {
    "predict JSON: a string in a later row": ("/predict", {"json": {"inputs": [[0, 0, 0], [0, "1", 0]]}}, "inputs.x"),
    "predict JSON: a boolean in a later row": ("/predict", {"json": {"inputs": [[0, 0, 0], [0, True, 0]]}}, "inputs.x"),
    "predict .npy: booleans": ("/predict", {"content": _npy(np.ones((2, 3), bool)),
                                            "headers": {"content-type": "application/x-npy"}}, "x"),
    "predict .npy: strings": ("/predict", {"content": _npy(np.full((2, 3), "1")),
                                           "headers": {"content-type": "application/x-npy"}}, "body"),
    "TF Serving rows: a string": ("/v1/models/ranged:predict", {"json": {"instances": [[0, 0, 0], ["0", 0, 0]]}},
                                  "instances.x"),
    "TF Serving rows: a boolean": ("/v1/models/ranged:predict", {"json": {"instances": [[0, 0, 0], [0, 0, False]]}},
                                   "instances.x"),
    "TF Serving columns: a boolean": ("/v1/models/ranged:predict", {"json": {"inputs": {"x": [[True, 0, 0]]}}},
                                      "inputs.x"),
    "v2 JSON: a string in FP32 data": ("/v2/models/ranged/infer", {"json": {"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0, 0, 0, 0, "1", 0]}]}}, "inputs[0].data"),
    "v2 JSON: a boolean in FP32 data": ("/v2/models/ranged/infer", {"json": {"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0, 0, 0, 0, True, 0]}]}}, "inputs[0].data"),
    "v2 JSON: a BOOL tensor for a number input": ("/v2/models/ranged/infer", {"json": {"inputs": [
        _v2_tensor(np.ones((2, 3), bool), "BOOL")]}}, "inputs[0]"),
    "v2 binary: a BOOL tensor for a number input": ("/v2/models/ranged/infer", dict(zip(
        ("content", "headers"), _v2_binary(np.ones((2, 3), bool), "BOOL"), strict=True)), "inputs[0]"),
}


@pytest.mark.parametrize("case", list(NOT_NUMBERS))
def test_strings_and_booleans_are_never_numbers_in_any_codec(make_server, case):  # noqa: F811
    model = ranged()
    client, _ = make_server([model])
    path, kwargs, field = NOT_NUMBERS[case]
    r = client.post(path, **kwargs)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()
    assert model.seen == []


def test_validate_range_is_read_from_the_model_config(tmp_path):
    from service import Settings
    from service.repository import ModelRepository

    for name, value in (("default", None), ("off", False), ("bad", "no")):
        (tmp_path / name / "1").mkdir(parents=True)
        config = {"architecture": "mnist-convnet", **({} if value is None else {"validate_range": value})}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    found = {item.name if hasattr(item, "name") else item[0]: item
             for item in ModelRepository(Settings(model_repository=tmp_path)).scan()}
    assert found["default"].validate_range is True and found["off"].validate_range is False
    assert "'validate_range' must be true or false, got 'no'" in found["bad"][1]

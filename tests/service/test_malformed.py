"""Every malformed field of a v2 or TF Serving request is a 400 naming the field, never a 500 (each case
below gave a 500, a silent coercion or an ignored field before)."""
from __future__ import annotations

import numpy as np
import pytest

from service.model import TensorSpec

from .fakes import FakeModel, doubler
from .test_app import make_server  # noqa: F401  (the shared real-server fixture)

GOOD = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}

V2 = {
    "input name is a list": ({"inputs": [{**GOOD, "name": ["x"]}]}, "inputs[0].name"),
    "datatype is a list": ({"inputs": [{**GOOD, "datatype": ["FP32"]}]}, "inputs[0].datatype"),
    "input parameters is a list": ({"inputs": [{**GOOD, "parameters": []}]}, "inputs[0].parameters"),
    "input parameters is a string": ({"inputs": [{**GOOD, "parameters": "x"}]}, "inputs[0].parameters"),
    "id is an object": ({"id": {"a": 1}, "inputs": [GOOD]}, "id"),
    "data holds a string": ({"inputs": [{**GOOD, "data": ["1", 2, 3]}]}, "inputs[0].data"),
    "data holds a boolean": ({"inputs": [{**GOOD, "data": [1, True, 3]}]}, "inputs[0].data"),
    "data holds null": ({"inputs": [{**GOOD, "data": [1, None, 3]}]}, "inputs[0].data"),
    "data is ragged": ({"inputs": [{**GOOD, "data": [[1, 2], [3]]}]}, "inputs[0].data"),
}
V1 = {
    "signature_name is a number": ({"signature_name": 5, "instances": [[1, 2, 3]]}, "signature_name"),
    "unknown signature_name": ({"signature_name": "classify_x", "instances": [[1, 2, 3]]}, "signature_name"),
    "a string in a later row": ({"instances": [[1, 2, 3], [1, "2", 3]]}, "instances.x"),
    "a boolean in a later row": ({"instances": [[1, 2, 3], [1, 2, False]]}, "instances.x"),
}


@pytest.mark.parametrize("case", list(V2) + list(V1))
def test_malformed_field_is_a_400_naming_it_and_the_server_keeps_serving(make_server, case):  # noqa: F811
    client, _ = make_server([doubler()])
    body, field = V2[case] if case in V2 else V1[case]
    path = "/v2/models/double/infer" if case in V2 else "/v1/models/double:predict"
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()
    ok = client.post("/v2/models/double/infer", json={"inputs": [GOOD]})       # same connection, still served
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]


def test_the_default_signature_names_are_accepted(make_server):  # noqa: F811
    client, _ = make_server([doubler()])
    for sig in ("", "serving_default"):
        r = client.post("/v1/models/double:predict", json={"signature_name": sig, "instances": [[1, 2, 3]]})
        assert r.status_code == 200 and r.json()["predictions"][0]["y"] == [2.0, 4.0, 6.0]


def _nan_model():
    return FakeModel("nan", [TensorSpec("x", np.dtype("float32"), (3,))],
                     lambda d: {"y": np.where(d["x"] < 0, np.float32(np.nan), d["x"]).astype(np.float32)})


@pytest.mark.parametrize(("path", "body"), [
    ("/predict", {"inputs": [[1, -1, 2]]}),
    ("/v1/models/nan:predict", {"instances": [[1, -1, 2]]}),
    ("/v2/models/nan/infer", {"inputs": [{**GOOD, "data": [1, -1, 2]}]}),
])
def test_a_nan_output_is_never_sent_as_json_null_with_a_200(make_server, path, body):  # noqa: F811
    client, _ = make_server([_nan_model()])
    r = client.post(path, json=body)
    assert r.status_code == 500 and r.json()["field"] == "y"
    assert "NaN or Inf, which JSON cannot carry" in r.json()["error"]
    assert "binary" in r.json()["error"]
    fine = client.post(path, json=body | ({"inputs": [[1, 5, 2]]} if path == "/predict" else
                                          {"instances": [[1, 5, 2]]} if "v1" in path else
                                          {"inputs": [{**GOOD, "data": [1, 5, 2]}]}))
    assert fine.status_code == 200


def test_binary_v2_output_carries_the_nan(make_server):  # noqa: F811
    client, _ = make_server([_nan_model()])
    body = {"inputs": [{**GOOD, "data": [1, -1, 2]}], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    r = client.post("/v2/models/nan/infer", json=body)
    assert r.status_code == 200
    n = int(r.headers["inference-header-content-length"])
    y = np.frombuffer(r.content[n:], dtype="<f4")
    assert y[0] == 1 and np.isnan(y[1]) and y[2] == 2

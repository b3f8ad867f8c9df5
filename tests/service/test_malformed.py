"""Every malformed field of a v2 or TF Serving request is a 400 naming the field, never a 500 (each case
below gave a 500, a silent coercion or an ignored field before)."""
from __future__ import annotations

import pytest

from .fakes import doubler
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

"""service.fastpath: the inference routes served without FastAPI's routing layers answer exactly as the
routed app does: same bodies, same errors, same API-key check, and a clean 500 for an unexpected error."""
from __future__ import annotations

import pytest

from service import Settings
from service.fastpath import _match
from service.protocols import kserve, predict, tfserving

from .fakes import doubler
from .test_app import make_server  # noqa: F401  (the shared real-server fixture)


@pytest.mark.parametrize("path,expected", [
    ("/predict", (predict.predict, {})),
    ("/v2/models/m/infer", (kserve.infer_latest, {"name": "m"})),
    ("/v2/models/m/versions/3/infer", (kserve.infer_version, {"name": "m", "version": "3"})),
    ("/v1/models/m:predict", (tfserving.post_model, {"name_verb": "m:predict"})),
    ("/v1/models/m/versions/2:classify", (tfserving.post_model_version, {"name": "m", "version_verb": "2:classify"})),
    ("/v2/models//infer", None), ("/v2/models/m/versions//infer", None), ("/v2/models/m/ready", None),
    ("/v2/repository/models/m/load", None), ("/predict/", None), ("/v1/models/m/versions/2/x", None),
    ("/models", None), ("/v2/models/m/extra/infer", None),
])
def test_only_the_inference_routes_take_the_direct_path(path, expected):
    assert _match(path) == expected


def test_direct_and_routed_answers_agree(make_server):  # noqa: F811
    client, _ = make_server([doubler()])
    r = client.post("/predict", json={"inputs": [[1, 2, 3]]})
    assert r.status_code == 200 and r.json()["outputs"]["y"] == [[2.0, 4.0, 6.0]]
    r = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404 and "unknown model" in r.json()["error"]
    r = client.get("/predict")                    # not POST: FastAPI's router answers 405 as before
    assert r.status_code == 405 and "allowed: POST" in r.json()["error"]
    r = client.post("/v1/models/double:predict", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 200 and r.json()["predictions"][0]["y"] == [2.0, 4.0, 6.0]


def test_an_unexpected_error_is_a_500_without_internals_and_is_logged(make_server, monkeypatch, caplog):  # noqa: F811
    client, _ = make_server([doubler()])

    async def broken(request):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(predict, "predict", broken)
    r = client.post("/predict", json={"inputs": [[1, 2, 3]]})
    assert r.status_code == 500 and r.json() == {"error": "internal server error (the server log has the details)"}
    assert "secret internals" in caplog.text


def test_api_keys_guard_the_direct_path(make_server):  # noqa: F811
    client, _ = make_server([doubler()], Settings(api_keys=["k1"]))
    assert client.post("/predict", json={"inputs": [[1, 2, 3]]}).status_code == 401
    assert client.post("/v2/models/double/infer", json={}, headers={"authorization": "Bearer no"}).status_code == 403
    r = client.post("/predict", json={"inputs": [[1, 2, 3]]}, headers={"authorization": "Bearer k1"})
    assert r.status_code == 200, r.text

"""What the service reveals and how it answers (issue 13): no filesystem paths in any answer, the
docs behind a setting and served offline, every error as ``{"error": ...}`` (router 404/405
included), Triton's model configuration, repository index and classification extensions checked
with the official tritonclient, HEAD on the probe routes, no redirect built from client headers,
client text never echoed whole, and strict KServe v2 booleans.

Real uvicorn servers on 127.0.0.1; the path test uses the real model repository loader on a copy of
the bundled digits model."""
from __future__ import annotations

import asyncio
import http.client
import shutil

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app
from service.model import TensorSpec

from .fakes import FakeModel, FakeRepository, doubler, pixels
from .realmodel import REPO
from .server import serve
from .test_app import wait_ready

KEY = "surface-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def flags():
    """A model with a BOOL input: 'count' is how many flags are set in each row."""
    return FakeModel("flags", [TensorSpec("flag", np.dtype("bool"), (2,))],
                     lambda d: {"count": d["flag"].sum(axis=1).astype(np.float32)})


def _app(settings=None, models=None, **repo_kw):
    models = models if models is not None else [doubler(), pixels(), flags()]
    return create_app(settings or Settings(poll_interval_s=0), registry=CollectorRegistry(),
                      repository=FakeRepository(models, **repo_kw))


@pytest.fixture(scope="module")
def server():
    with serve(_app(fail_load=["broken"])) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        wait_ready(client)
        yield srv, client


@pytest.fixture
def triton(server):
    import tritonclient.http as th

    tc = th.InferenceServerClient(f"127.0.0.1:{server[0].port}")
    yield tc
    tc.close()


# ---------------------------------------------------------------- every error is {"error": ...}
def test_unknown_route_and_wrong_method_answer_error_bodies(server):
    _, client = server
    r = client.get("/no/such/route")
    assert r.status_code == 404 and "/no/such/route" in r.json()["error"]
    r = client.delete("/models")
    assert r.status_code == 405 and "GET" in r.json()["error"] and r.headers["allow"] == "GET, HEAD"
    r = client.put("/v2/models/double/infer")
    assert r.status_code == 405 and set(r.json()) >= {"error"}


def test_tritonclient_reads_our_errors(triton):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as e:
        triton.get_model_config("nope")
    assert "unknown model 'nope'" in e.value.message() and e.value.status() == "404"
    with pytest.raises(InferenceServerException) as e:        # refused under the default model control
        triton.unload_model("double")
    assert "TPSERVE_MODEL_CONTROL=explicit" in e.value.message() and e.value.status() == "409"


def test_request_validation_errors_are_error_bodies():
    """No route of ours declares typed parameters today; one added later still answers 400 {"error"}."""
    app = _app(models=[doubler()])

    @app.get("/typed")
    async def typed(n: int):
        return {"n": n}

    async def get():       # in process, no lifespan: the route needs no model
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            return await client.get("/typed?n=seven")

    r = asyncio.run(get())
    assert r.status_code == 400 and r.json()["field"] == "query.n" and "integer" in r.json()["error"]


def test_openapi_declares_error_bodies_not_fastapi_validation_errors(server):
    _, client = server
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)


# ---------------------------------------------------------------- HEAD, redirects, echoes
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/models", "/v2/health/ready"])
def test_head_answers_like_get_without_a_body(server, path):
    _, client = server
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code      # /readyz: 503, a model failed to load
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_trailing_slash_is_not_redirected_to_the_client_host(server):
    _, client = server
    r = client.get("/models/", headers={"Host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers
    assert "evil.example" not in r.text and "/models" in r.json()["error"]


def test_long_client_text_is_not_echoed_whole(server):
    _, client = server
    verb = "x" * 60_000
    for r in (client.post(f"/v1/models/double:{verb}", json={}), client.get(f"/v1/models/double:{verb}"),
              client.get(f"/v1/models/double/versions/{verb}"), client.get(f"/v2/models/double/versions/{verb}")):
        assert r.status_code == 404, r.text[:200]
        assert len(r.content) < 1000 and "xxxx" in r.json()["error"]


def test_readiness_of_a_version_that_is_not_served_is_404(server, triton):
    _, client = server
    r = client.get("/v2/models/double/versions/bogus/ready")
    assert r.status_code == 404 and "bogus" in r.json()["error"]
    assert client.get("/v2/models/double/versions/7/ready").status_code == 404
    assert client.get("/v2/models/double/versions/1/ready").json() == {"name": "double", "ready": True}
    assert triton.is_model_ready("double", "1") and not triton.is_model_ready("double", "bogus")


# ---------------------------------------------------------------- strict KServe v2 booleans
def _v2(client, model, inputs, **extra):
    return client.post(f"/v2/models/{model}/infer", json={"inputs": inputs, **extra})


X = [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]


@pytest.mark.parametrize("params", [{"binary_data_output": "false"}, {"binary_data_output": 1}])
def test_binary_data_output_must_be_a_json_boolean(server, params):
    _, client = server
    r = _v2(client, "double", X, parameters=params)
    assert r.status_code == 400 and r.json()["field"] == "parameters.binary_data_output"
    r = _v2(client, "double", X, outputs=[{"name": "y", "parameters": {"binary_data": "true"}}])
    assert r.status_code == 400 and r.json()["field"] == "outputs[0].parameters.binary_data"
    r = _v2(client, "double", X, parameters={"binary_data_output": False})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("data", [[True, False, 2.5, True], [1, 0, 0, 1], [True, False, "true", False]])
def test_bool_tensors_take_json_booleans_only(server, data):
    _, client = server
    r = _v2(client, "flags", [{"name": "flag", "shape": [2, 2], "datatype": "BOOL", "data": data}])
    assert r.status_code == 400 and "true or false" in r.json()["error"]


def test_bool_tensor_from_tritonclient(triton):
    import tritonclient.http as th

    flag = np.array([[True, False], [True, True]])
    for binary in (False, True):
        inp = th.InferInput("flag", [2, 2], "BOOL")
        inp.set_data_from_numpy(flag, binary_data=binary)
        np.testing.assert_array_equal(triton.infer("flags", [inp]).as_numpy("count"), [1, 2])


# ---------------------------------------------------------------- Triton extensions
def test_model_config_via_tritonclient(triton):
    from tritonclient.utils import InferenceServerException

    cfg = triton.get_model_config("double")
    assert cfg["name"] == "double" and cfg["platform"] == "tensorflow_graphdef" and cfg["backend"] == "tensorflow"
    assert cfg["max_batch_size"] == 64
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    assert cfg["input"] == [{"name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [3]}]
    y, s = sorted(cfg["output"], key=lambda o: o["name"], reverse=True)
    assert y == {"name": "y", "data_type": "TYPE_FP32", "dims": [3]}
    # a scalar per row: Triton's convention is dims [1] reshaped to []
    assert s == {"name": "sum", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert cfg["instance_group"] == [{"name": "double", "kind": "KIND_CPU", "count": 1}]
    img = triton.get_model_config("pixels")["input"][0]
    assert img["data_type"] == "TYPE_UINT8" and img["dims"] == [2, 2]
    assert triton.get_model_config("double", "1") == cfg
    with pytest.raises(InferenceServerException) as e:
        triton.get_model_config("double", "7")
    assert e.value.status() == "404"


def test_model_config_reports_the_batching_options():
    opts = Settings(poll_interval_s=0, batching={"max_batch_size": 8, "max_queue_delay_ms": 2.5})
    with serve(_app(opts, [doubler()])) as srv, httpx.Client(base_url=srv.url) as client:
        wait_ready(client)
        cfg = client.get("/v2/models/double/config").json()
    assert cfg["max_batch_size"] == 8 and cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 2500


def test_repository_index_via_tritonclient(server, triton):
    _, client = server
    index = triton.get_model_repository_index()
    rows = {row["name"]: row for row in index}
    assert rows["double"] == {"name": "double", "version": "1", "state": "READY"}
    assert rows["broken"]["state"] == "UNAVAILABLE" and "corrupt" in rows["broken"]["reason"]
    assert set(rows) == {"double", "pixels", "flags", "broken"}
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert sorted(r["name"] for r in ready) == ["double", "flags", "pixels"]
    r = client.post("/v2/repository/index", json={"ready": "yes"})
    assert r.status_code == 400 and r.json()["field"] == "ready"


def _expected_classes(scores: np.ndarray, k: int, labels=None) -> list[list[str]]:
    """Triton's format, computed independently: "%f" score, class index, label when there is one."""
    out = []
    for row in scores.reshape(len(scores), -1):
        order = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        out.append([f"{float(row[i]):f}:{i}" + (f":{labels[i]}" if labels else "") for i in order])
    return out


def _strings(a: np.ndarray) -> list[list[str]]:
    return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in a.tolist()]


@pytest.mark.parametrize("binary", [False, True])
def test_classification_extension_via_tritonclient(triton, binary):
    import tritonclient.http as th

    img = np.array([[[10, 20], [30, 40]], [[250, 240], [230, 220]], [[0, 0], [0, 0]]], np.uint8)
    inp = th.InferInput("image", list(img.shape), "UINT8")
    inp.set_data_from_numpy(img, binary_data=binary)
    plain = triton.infer("pixels", [inp], outputs=[th.InferRequestedOutput("prob", binary_data=binary)])
    scores = plain.as_numpy("prob")
    res = triton.infer("pixels", [inp], outputs=[th.InferRequestedOutput("prob", binary_data=binary, class_count=1),
                                                 th.InferRequestedOutput("mean", binary_data=binary)])
    out = res.get_output("prob")
    assert out["datatype"] == "BYTES" and out["shape"] == [3, 1]
    assert _strings(res.as_numpy("prob")) == _expected_classes(scores, 1, ["a", "b"])
    np.testing.assert_allclose(res.as_numpy("mean"), [25, 235, 0], rtol=1e-6)
    # k above the number of classes is cut to it; a model without labels gives "score:index"
    res = triton.infer("pixels", [inp], outputs=[th.InferRequestedOutput("prob", binary_data=binary, class_count=5)])
    assert res.get_output("prob")["shape"] == [3, 2]
    assert _strings(res.as_numpy("prob")) == _expected_classes(scores, 2, ["a", "b"])
    x = np.array([[3, -1, 7]], np.float32)
    xin = th.InferInput("x", [1, 3], "FP32")
    xin.set_data_from_numpy(x, binary_data=binary)
    res = triton.infer("double", [xin], outputs=[th.InferRequestedOutput("y", binary_data=binary, class_count=2)])
    assert _strings(res.as_numpy("y")) == _expected_classes(x * 2, 2) == [["14.000000:2", "6.000000:0"]]


@pytest.mark.parametrize("k", ["2", -1, 1.5, True])
def test_classification_count_must_be_a_non_negative_integer(server, k):
    _, client = server
    r = _v2(client, "double", X, outputs=[{"name": "y", "parameters": {"classification": k}}])
    assert r.status_code == 400 and r.json()["field"] == "outputs[0].parameters.classification"


def test_server_metadata_advertises_the_extensions(triton):
    ext = set(triton.get_server_metadata()["extensions"])
    assert {"classification", "model_configuration", "model_repository", "binary_tensor_data"} <= ext


# ---------------------------------------------------------------- /docs, /redoc, /openapi.json
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


def test_docs_are_served_from_local_assets_when_no_keys_are_set(server):
    _, client = server
    for path in DOC_PATHS:
        assert client.get(path).status_code == 200, path
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "https://" not in html and "http://" not in html, page     # nothing from a CDN
        scripts = [s.split('"')[1] for s in html.split("src=")[1:]]
        assert scripts, page
        for src in scripts:
            r = client.get(src)
            assert r.status_code == 200 and len(r.content) > 100_000, src
            assert "javascript" in r.headers["content-type"]


def test_docs_are_closed_by_default_when_api_keys_are_set():
    with serve(_app(Settings(poll_interval_s=0, api_keys=[KEY]), [doubler()])) as srv, \
            httpx.Client(base_url=srv.url) as client:
        wait_ready(client)
        for path in DOC_PATHS:
            assert client.get(path).status_code == 401, path
            r = client.get(path, headers=AUTH)
            assert r.status_code == 404 and "error" in r.json(), path


def test_docs_setting_opens_them_with_keys_and_the_schema_declares_the_key():
    with serve(_app(Settings(poll_interval_s=0, api_keys=[KEY], docs="on"), [doubler()])) as srv, \
            httpx.Client(base_url=srv.url) as client:
        wait_ready(client)
        for path in DOC_PATHS:
            assert client.get(path).status_code == 200, path    # no key needed to read the docs
        schema = client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
        predict = schema["paths"]["/predict"]["post"]
        assert predict["security"] == [{"bearer": []}] and {"401", "403"} <= set(predict["responses"])
        assert "security" not in schema["paths"]["/healthz"]["get"]
        assert client.post("/predict", json={"inputs": [[1, 2, 3]]}).status_code == 401
        # the open asset prefix is no way around the key (a raw request: httpx would normalise the path)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        try:
            conn.request("GET", "/docs/assets/../../models")
            assert conn.getresponse().status == 401
        finally:
            conn.close()


def test_docs_setting_off_closes_them_without_keys():
    with serve(_app(Settings(poll_interval_s=0, docs="off"), [doubler()])) as srv, \
            httpx.Client(base_url=srv.url) as client:
        wait_ready(client)
        for path in DOC_PATHS:
            assert client.get(path).status_code == 404, path


# ---------------------------------------------------------------- no filesystem paths in any answer
def _write_repository(root):
    weights = REPO / "digits" / "1" / "model.npz"
    cfg = '{"architecture": "mnist-convnet", "options": {}}'
    for name in ("good", "corrupt", "empty", "noversion"):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(cfg)
    (root / "good" / "1").mkdir()
    shutil.copy(weights, root / "good" / "1" / "model.npz")
    (root / "corrupt" / "1").mkdir()
    (root / "corrupt" / "1" / "model.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    (root / "empty" / "1").mkdir()
    (root / "badconfig").mkdir()
    (root / "badconfig" / "config.json").write_text('{"architecture": "mnist-convnet", "weights": "/etc/x"}')


def _walk(client, names, headers):
    """Every answer that can carry a model's state or a load error."""
    yield client.get("/readyz", headers=headers)
    yield client.get("/v2/health/ready", headers=headers)
    yield client.get("/models", headers=headers)
    yield client.post("/v2/repository/index", headers=headers)
    for m in names:
        for path in (f"/v1/models/{m}", f"/v1/models/{m}/metadata", f"/v1/models/{m}/versions/1", f"/v2/models/{m}",
                     f"/v2/models/{m}/ready", f"/v2/models/{m}/config", f"/v2/models/{m}/versions/1/ready"):
            yield client.get(path, headers=headers)
        yield client.post(f"/v2/repository/models/{m}/load", headers=headers)
        yield client.post(f"/predict?model={m}", json={"inputs": [[[0.0] * 28] * 28]}, headers=headers)
        yield client.post(f"/v1/models/{m}:predict", json={"instances": [[[0.0] * 28] * 28]}, headers=headers)
        yield client.post(f"/v2/models/{m}/infer", json={"inputs": []}, headers=headers)


@pytest.mark.parametrize("keys", [False, True], ids=["no-keys", "api-keys"])
def test_no_absolute_path_in_any_answer(tmp_path, keys):
    root = tmp_path / "repository"
    _write_repository(root)
    settings = Settings(model_repository=root, poll_interval_s=0, warmup=False, api_keys=[KEY] if keys else [])
    headers = AUTH if keys else {}
    secrets = {str(tmp_path), str(tmp_path.resolve())}
    names = ["good", "corrupt", "empty", "noversion", "badconfig"]
    with serve(create_app(settings, registry=CollectorRegistry())) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as client:
        wait_ready(client)
        # a new version whose weights are corrupt: the load fails and 'good' keeps serving version 1
        (root / "good" / "2").mkdir()
        (root / "good" / "2" / "model.npz").write_bytes(b"\x93NUMPY garbage")
        seen = list(_walk(client, names, headers))
        assert client.get("/models", headers=headers).status_code == 200
        status = {m["name"]: m for m in client.get("/models", headers=headers).json()}
    texts = [r.text for r in seen]
    leaks = [(r.request.method, r.request.url.path, r.text[:300]) for r in seen if any(s in r.text for s in secrets)]
    assert not leaks
    # the messages still say which file is wrong, relative to the repository
    reasons = " ".join(texts)
    assert "empty/1" in reasons and "badconfig/config.json" in reasons and "noversion" in reasons
    assert status["good"]["state"] == "READY" and status["good"]["version"] == "1"
    assert "good/2" in status["good"]["error"] and status["corrupt"]["state"] == "FAILED"


def test_missing_repository_is_reported_without_its_path(tmp_path):
    from service.repository import ModelRepository

    ((name, error),) = ModelRepository(Settings(model_repository=tmp_path / "nowhere")).scan()
    assert str(tmp_path) not in error and "TPSERVE_MODEL_REPOSITORY" in error

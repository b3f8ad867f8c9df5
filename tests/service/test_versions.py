"""Several versions of a model at once: version policies, version labels, addressing a version by number
or label in every protocol, one batcher and one metrics series per version, per-version hot reload.

Each version of the fake model multiplies by its own factor (``scaler``), so every answer says which
version computed it, independently of the version the server reports.
"""
from __future__ import annotations

import contextlib
import json

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app
from service.manager import ModelManager
from service.metrics import Metrics
from service.model import VersionPolicy, parse_version_labels
from service.repository import ModelRepository

from .fakes import PATIENCE_S, HeldModel, VersionedRepository, scaler
from .realmodel import REPO
from .server import serve
from .test_app import wait_ready
from .test_grpc import Server, grpc_error, grpc_input, with_grpc

X = [[1.0, 2.0, 3.0]]


@contextlib.contextmanager
def running(repo, settings=None):
    settings = (settings or Settings()).model_copy(update={"grpc_port": 0, "poll_interval_s": 0})
    metrics = Metrics(CollectorRegistry())
    manager = ModelManager(settings, metrics, repo)
    app = with_grpc(create_app(settings, manager=manager, metrics=metrics))
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        wait_ready(http)
        s = Server(srv, app, http, {})
        s.manager = manager
        try:
            yield s
        finally:
            s.close()


def three_versions(**config):
    return VersionedRepository("scale", {v: scaler(factor=float(v), version=str(v)) for v in (1, 2, 3)}, **config)


def factor(y, x=X) -> float:
    """The factor that computed ``y`` from ``x``: which version answered."""
    ratio = np.asarray(y, dtype=np.float64) / np.asarray(x, dtype=np.float64)
    assert np.allclose(ratio, ratio.flat[0]), ratio
    return float(ratio.flat[0])


# ---------------------------------------------------------------- policy and label parsing
@pytest.mark.parametrize("raw, available, selected", [
    (None, [1, 2, 3], [3]),
    ({"latest": 2}, [1, 2, 3], [2, 3]),
    ({"latest": {"num_versions": 5}}, [1, 2, 3], [1, 2, 3]),
    ({"all": {}}, [4, 1, 7], [1, 4, 7]),
    ({"all": True}, [2], [2]),
    ({"specific": [1, 3, 9]}, [1, 2, 3], [1, 3]),
    ({"specific": {"versions": [2]}}, [1, 2, 3], [2]),
])
def test_version_policies_select_as_tf_serving_and_triton_do(raw, available, selected):
    assert VersionPolicy.parse(raw).select(available) == selected


@pytest.mark.parametrize("raw, message", [
    ({"latest": 0}, "'latest' needs a whole number of versions >= 1"),
    ({"latest": "2"}, "'latest' needs a whole number"),
    ({"specific": []}, "'specific' needs a non-empty list of version numbers"),
    ({"specific": [1, "x"]}, "'specific' needs a non-empty list"),
    ({"newest": 1}, "unknown policy 'newest'"),
    ({"latest": 1, "all": {}}, "must be one of"),
    ("latest", "must be one of"),
])
def test_a_bad_version_policy_is_refused_with_what_is_expected(raw, message):
    with pytest.raises(ValueError, match=message):
        VersionPolicy.parse(raw)


@pytest.mark.parametrize("raw, message", [
    ({"3": 3}, "not a number"),
    ({"": 3}, "must be 1-64 letters"),
    ({"a b": 3}, "must be 1-64 letters"),
    ({"stable": "3"}, "must name a version number"),
    ({"stable": True}, "must name a version number"),
    (["stable"], "must map label names to version numbers"),
])
def test_bad_version_labels_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_version_labels(raw)


def test_the_repository_reads_the_policy_and_labels_and_names_the_file_when_they_are_wrong(tmp_path):
    for name, extra in (("good", {"version_policy": {"latest": 2}, "version_labels": {"stable": 1}}),
                        ("bad", {"version_policy": {"latest": -1}}),
                        ("badlabel", {"version_labels": {"7": 1}})):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "config.json").write_text(json.dumps({"architecture": "mnist-convnet", **extra}))
    items = {(i.name if hasattr(i, "name") else i[0]): i for i in ModelRepository(Settings(model_repository=tmp_path)).scan()}
    good = items["good"]
    assert good.version_policy == VersionPolicy("latest", 2) and good.version_labels == {"stable": 1}
    assert items["bad"][1].startswith("bad/config.json: version_policy: 'latest' needs")
    assert items["badlabel"][1].startswith("badlabel/config.json: version_labels: label '7'")


# ---------------------------------------------------------------- several versions, every protocol
@pytest.fixture(scope="module")
def two():
    repo = three_versions(version_policy=VersionPolicy("latest", 2), version_labels={"stable": 2, "canary": 3})
    with running(repo) as s:
        s.repo = repo
        yield s


def test_latest_two_loads_the_two_newest_each_with_its_own_batcher(two):
    entry = two.manager.entries["scale"]
    assert entry.versions == ["2", "3"] and two.repo.loads == [3, 2]      # newest first
    assert entry.slots["2"].batcher is not entry.slots["3"].batcher
    (m,) = two.http.get("/models").json()
    assert [v["version"] for v in m["versions"]] == ["2", "3"] and m["version"] == "3"
    assert m["version_policy"] == {"latest": {"num_versions": 2}}
    assert m["version_labels"] == {"stable": 2, "canary": 3}
    assert all(v["state"] == "READY" for v in m["versions"])


def test_http_predict_names_a_version_by_number_or_label(two):
    post = lambda body: two.http.post("/predict", json={"model": "scale", "inputs": X, **body})  # noqa: E731
    for body, version in (({}, "3"), ({"version": "2"}, "2"), ({"version": 3}, "3"), ({"version": "stable"}, "2"),
                          ({"version": "canary"}, "3")):
        r = post(body)
        assert r.status_code == 200 and r.json()["version"] == version, (body, r.text)
        assert factor(r.json()["outputs"]["y"]) == float(version)
    r = two.http.post("/predict?model=scale&version=stable", json={"inputs": X})
    assert r.json()["version"] == "2" and factor(r.json()["outputs"]["y"]) == 2.0


def test_a_version_not_loaded_or_an_unknown_label_is_404_naming_what_is_loaded(two):
    r = two.http.post("/predict", json={"model": "scale", "version": 1, "inputs": X})
    assert r.status_code == 404 and r.json()["expected"] == ["2", "3"], r.text
    assert "version '1' is not loaded; serving version 3 (loaded versions: ['2', '3'])" in r.json()["error"]
    r = two.http.post("/v2/models/scale/versions/beta/infer", json={
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]})
    assert r.status_code == 404 and "no version label 'beta'" in r.json()["error"], r.text
    assert r.json()["expected"] == ["canary", "stable"]
    r = two.http.post("/v1/models/scale/labels/3:predict", json={"instances": X})
    assert r.status_code == 400 and "use /versions/3" in r.json()["error"]


def test_tf_serving_rest_addresses_versions_and_labels(two):
    for path, version in (("/v1/models/scale:predict", 3), ("/v1/models/scale/versions/2:predict", 2),
                          ("/v1/models/scale/labels/stable:predict", 2), ("/v1/models/scale/labels/canary:predict", 3)):
        r = two.http.post(path, json={"instances": X})
        assert r.status_code == 200, (path, r.text)
        assert factor(r.json()["predictions"]) == version, path
    status = two.http.get("/v1/models/scale").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("3", "AVAILABLE"), ("2", "AVAILABLE")]
    status = two.http.get("/v1/models/scale/labels/stable").json()["model_version_status"]
    assert [s["version"] for s in status] == ["2"]
    meta = two.http.get("/v1/models/scale/labels/canary/metadata").json()
    assert meta["model_spec"]["version"] == "3"


def test_kserve_v2_http_and_grpc_address_versions_and_labels(two):
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]}
    for version, expect in (("2", "2"), ("stable", "2"), ("canary", "3")):
        r = two.http.post(f"/v2/models/scale/versions/{version}/infer", json=body)
        assert r.status_code == 200 and r.json()["model_version"] == expect, r.text
        assert factor(r.json()["outputs"][0]["data"], X[0]) == float(expect)
    assert two.http.get("/v2/models/scale").json()["versions"] == ["2", "3"]
    assert two.http.get("/v2/models/scale/versions/stable/ready").status_code == 200
    assert two.http.get("/v2/models/scale/versions/1/ready").status_code == 404
    x = np.asarray(X, dtype=np.float32)
    for version, expect in (("", "3"), ("2", "2"), ("stable", "2"), ("canary", "3")):
        r = two.triton.infer("scale", [grpc_input("x", x)], model_version=version)
        assert r.get_response().model_version == expect
        assert factor(r.as_numpy("y")) == float(expect)
    assert two.triton.is_model_ready("scale", "canary")
    e = grpc_error(lambda: two.triton.infer("scale", [grpc_input("x", x)], model_version="1"))
    assert e.status() == "StatusCode.NOT_FOUND" and "loaded versions: ['2', '3']" in e.message()
    assert two.triton.get_model_config("scale").config.version_policy.latest.num_versions == 2
    index = two.triton.get_model_repository_index(as_json=True)["models"]
    assert [(m["name"], m["version"], m["state"]) for m in index] == [("scale", "2", "READY"), ("scale", "3", "READY")]


def test_tf_serving_grpc_addresses_labels(two):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        prediction_service_pb2_grpc,
    )

    from .test_grpc_tfserving import predict_request

    with grpc.insecure_channel(two.grpc_url) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        x = np.asarray(X, dtype=np.float32)
        for kw, expect in (({}, 3), ({"version": 2}, 2), ({"label": "stable"}, 2), ({"label": "canary"}, 3)):
            r = stub.Predict(predict_request("scale", x, **kw))
            assert r.model_spec.version.value == expect
            assert factor(tf.make_ndarray(r.outputs["y"])) == float(expect)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(predict_request("scale", x, label="beta"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "no version label 'beta'" in e.value.details()
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "scale"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request)
        assert [v.version for v in status.model_version_status] == [3, 2]


def test_each_version_has_its_own_metrics_and_statistics(two):
    def batches(version):
        return two.registry.get_sample_value("tpserve_batch_size_count", {"model": "scale", "version": version}) or 0

    before = {v: batches(v) for v in ("2", "3")}
    for _ in range(3):
        assert two.http.post("/predict", json={"model": "scale", "version": "stable", "inputs": X}).status_code == 200
    assert two.http.post("/predict", json={"model": "scale", "inputs": X}).status_code == 200
    assert {v: batches(v) - before[v] for v in ("2", "3")} == {"2": 3, "3": 1}
    stats = two.triton.get_inference_statistics("scale", as_json=True)["model_stats"]
    assert [(s["version"], int(s["execution_count"])) for s in stats] == [("2", batches("2")), ("3", batches("3"))]
    (pinned,) = two.triton_http.get_inference_statistics("scale", "stable")["model_stats"]
    assert pinned["version"] == "2" and pinned["execution_count"] == batches("2")
    info = {(s.labels["version"], s.labels["state"]) for s in two.registry.collect() if s.name == "tpserve_model_info"
            for s in s.samples if s.value == 1 and s.labels["model"] == "scale"}
    assert info == {("2", "READY"), ("3", "READY")}


# ---------------------------------------------------------------- version changes per version
def test_a_new_version_joins_and_the_oldest_leaves_only_after_it_loaded():
    repo = three_versions(version_policy=VersionPolicy("latest", 2))
    del repo.models[3]
    v1 = repo.models[1] = HeldModel(repo.models[1], held=False)      # HeldModel: ``closed`` when retired
    with running(repo) as s:
        entry = s.manager.entries["scale"]
        assert entry.versions == ["1", "2"]
        repo.models[3] = None                     # a corrupt version 3: versions 1 and 2 keep serving
        r = s.http.post("/v2/repository/models/scale/load")
        assert r.status_code == 500 and "failed 3" in r.json()["error"] and r.json()["versions"] == ["1", "2"]
        assert entry.versions == ["1", "2"] and "version 3 failed to load, still serving 1, 2" in entry.error
        assert s.http.post("/predict", json={"model": "scale", "version": 1, "inputs": X}).status_code == 200
        repo.models[3] = scaler(factor=3.0, version="3")
        repo.touch(3)
        r = s.http.post("/v2/repository/models/scale/load")
        assert r.status_code == 200 and r.json()["result"] == "loaded 3" and r.json()["versions"] == ["2", "3"]
        assert v1.closed.wait(PATIENCE_S), "version 1 was not retired"
        r = s.http.post("/predict", json={"model": "scale", "version": 1, "inputs": X})
        assert r.status_code == 404 and "loaded versions: ['2', '3']" in r.json()["error"]
        assert factor(s.http.post("/predict", json={"model": "scale", "inputs": X}).json()["outputs"]["y"]) == 3.0
        # version 2's directory removed: 1 is back (latest 2 of {1, 3}), loaded before 2 leaves
        del repo.models[2]
        assert s.http.post("/v2/repository/models/scale/load").json()["result"] == "loaded 1"
        assert entry.versions == ["1", "3"]


def test_specific_versions_and_label_changes_take_effect_on_load():
    repo = three_versions(version_policy=VersionPolicy("specific", versions=(1, 3)), version_labels={"stable": 1})
    with running(repo) as s:
        entry = s.manager.entries["scale"]
        assert entry.versions == ["1", "3"]
        r = s.http.post("/predict", json={"model": "scale", "version": "stable", "inputs": X})
        assert r.json()["version"] == "1"
        loads = list(repo.loads)
        repo.config["version_labels"] = {"stable": 3}        # promote: only the label moves
        assert s.http.post("/v2/repository/models/scale/load").json()["result"] == "serving 1, 3"
        assert repo.loads == loads, "a label change must not reload any version"
        r = s.http.post("/predict", json={"model": "scale", "version": "stable", "inputs": X})
        assert r.json()["version"] == "3" and factor(r.json()["outputs"]["y"]) == 3.0
        repo.config["version_policy"] = VersionPolicy("specific", versions=(2,))
        assert s.http.post("/v2/repository/models/scale/load").json()["result"] == "loaded 2"
        assert entry.versions == ["2"]
        r = s.http.post("/predict", json={"model": "scale", "version": "stable", "inputs": X})
        assert r.status_code == 404 and "version label 'stable' (version 3) is not loaded" in r.json()["error"]


def test_a_policy_that_selects_no_version_fails_the_model_with_the_reason():
    repo = three_versions(version_policy=VersionPolicy("specific", versions=(7,)))
    with running(repo, Settings()) as s:
        pass
    entry = s.manager.entries["scale"]
    assert entry.state == "FAILED"
    assert entry.error == "the version policy (specific [7]) selects none of the versions ['1', '2', '3']"


def test_the_bundled_models_memory_is_its_variables(tmp_path):
    """``/models`` accounts each version's memory: its variables' bytes equal the weights file's arrays."""
    settings = Settings(model_repository=REPO, intra_op_threads=1, inter_op_threads=1, grpc_port=0)
    with serve(create_app(settings, registry=CollectorRegistry())) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as http:
        assert wait_ready(http, timeout_s=120).status_code == 200
        (m,) = http.get("/models").json()
    (version,) = m["versions"]
    with np.load(next((REPO / "digits" / "1").glob("*.npz"))) as weights:
        size = sum(weights[k].nbytes for k in weights.files)
    assert version["memory"]["variables_bytes"] == size
    assert version["memory"]["replicas"] == 1 and version["memory"]["resident_growth_bytes"] > 0
    assert version["version"] == "1" and version["state"] == "READY" and version["load_seconds"] > 0

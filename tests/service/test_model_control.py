"""Model control (Triton's repository extension, ``TPSERVE_MODEL_CONTROL``): load and unload over HTTP and
gRPC, an unload that answers every request it had accepted, the modes that refuse, and API keys.

Events are ordered with the fake model's own events (``HeldModel.entered``) and the manager's state,
never with sleeps.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service import Settings

from .fakes import PATIENCE_S, FakeRepository, HeldModel, doubler, scaler, wait_until
from .test_grpc import grpc_error, grpc_input
from .test_versions import running

X = [[1.0, 2.0, 3.0]]


def explicit(**kw) -> Settings:
    return Settings(model_control="explicit", **kw)


def test_explicit_mode_starts_with_the_startup_models_and_loads_and_unloads_over_http_and_grpc():
    repo = FakeRepository([doubler(), scaler("scale", factor=3.0)])
    with running(repo, explicit(startup_models=["scale"])) as s:
        assert s.http.get("/readyz").status_code == 200        # an unloaded model does not hold readiness
        index = {r["name"]: r for r in s.http.post("/v2/repository/index").json()}
        assert index["scale"] == {"name": "scale", "version": "1", "state": "READY"}
        assert index["double"]["state"] == "UNAVAILABLE" and "TPSERVE_STARTUP_MODELS" in index["double"]["reason"]
        r = s.http.post("/predict", json={"model": "double", "inputs": X})
        assert r.status_code == 404 and "POST /v2/repository/models/double/load" in r.json()["error"], r.text

        r = s.http.post("/v2/repository/models/double/load")
        assert r.status_code == 200 and r.json() == {"name": "double", "version": "1", "versions": ["1"],
                                                     "result": "loaded 1"}, r.text
        assert s.http.post("/predict", json={"model": "double", "inputs": X}).json()["outputs"]["y"] == [[2, 4, 6]]

        s.triton.unload_model("double")                          # gRPC RepositoryModelUnload
        r = s.http.post("/predict", json={"model": "double", "inputs": X})
        assert r.status_code == 404 and "is not loaded (unloaded through the repository API)" in r.json()["error"]
        (row,) = [m for m in s.triton.get_model_repository_index(as_json=True)["models"] if m["name"] == "double"]
        assert row["state"] == "UNAVAILABLE" and row["reason"] == "unloaded through the repository API"
        assert not s.triton.is_model_ready("double")
        e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", np.asarray(X, np.float32))]))
        assert e.status() == "StatusCode.NOT_FOUND"
        assert s.http.post("/v2/repository/models/double/unload").json()["result"] == "not loaded"

        s.triton.load_model("double")                            # gRPC RepositoryModelLoad
        assert s.triton.is_model_ready("double")
        r = s.http.post("/v2/repository/models/nope/load")
        assert r.status_code == 404 and "no model 'nope' to load" in r.json()["error"]
        assert grpc_error(lambda: s.triton.load_model("nope")).status() == "StatusCode.NOT_FOUND"
        assert grpc_error(lambda: s.triton.unload_model("nope")).status() == "StatusCode.NOT_FOUND"


def test_explicit_load_picks_up_a_model_added_to_the_repository_after_the_start():
    repo = FakeRepository([doubler()])
    with running(repo, explicit()) as s:
        repo.models["later"] = scaler("later", factor=5.0)
        r = s.http.post("/v2/repository/models/later/load")
        assert r.status_code == 200 and r.json()["result"] == "loaded 1", r.text
        r = s.http.post("/predict", json={"model": "later", "inputs": X})
        assert r.status_code == 200 and r.json()["outputs"]["y"] == [[5, 10, 15]]


def test_unload_refuses_new_requests_and_answers_every_accepted_one():
    held = HeldModel(doubler())
    repo = FakeRepository([held])
    with running(repo, explicit(batching={"max_batch_size": 1})) as s, ThreadPoolExecutor(4) as pool:
        post = lambda x: s.http.post("/predict", json={"model": "double", "inputs": [x]})  # noqa: E731
        running_ = pool.submit(post, [1, 1, 1])
        assert held.entered.wait(PATIENCE_S)
        queued = pool.submit(post, [2, 2, 2])
        wait_until(lambda: s.registry.get_sample_value("tpserve_queue_rows", {"model": "double", "version": "1"}) == 1,
                   "the second request to wait in the queue")
        unloading = pool.submit(s.http.post, "/v2/repository/models/double/unload")
        entry = s.manager.entries["double"]
        wait_until(lambda: entry.state == "UNLOADED", "the unload to begin")
        late = post([3, 3, 3])
        assert late.status_code == 404 and "not loaded" in late.json()["error"]
        assert not unloading.done() and not held.closed.is_set()   # still draining what it accepted
        held.release()
        assert running_.result().json()["outputs"]["y"] == [[2, 2, 2]]
        assert queued.result().json()["outputs"]["y"] == [[4, 4, 4]]
        r = unloading.result()
        assert r.status_code == 200 and r.json()["result"] == "unloaded 1" and r.json()["versions"] == [], r.text
        assert held.closed.is_set() and held.batch_sizes == [1, 1]


@pytest.mark.parametrize("mode, action, allowed", [("none", "load", False), ("none", "unload", False),
                                                   ("poll", "unload", False), ("poll", "load", True)])
def test_modes_that_do_not_allow_an_action_refuse_it_with_409_and_failed_precondition(mode, action, allowed):
    with running(FakeRepository([doubler()]), Settings(model_control=mode)) as s:
        r = s.http.post(f"/v2/repository/models/double/{action}")
        if allowed:
            assert r.status_code == 200, r.text
            return
        assert r.status_code == 409 and r.json()["received"] == mode, r.text
        assert "set TPSERVE_MODEL_CONTROL=explicit" in r.json()["error"]
        e = grpc_error(lambda: getattr(s.triton, f"{action}_model")("double"))
        assert e.status() == "StatusCode.FAILED_PRECONDITION" and f"TPSERVE_MODEL_CONTROL={mode}" in e.message()
        assert s.http.post("/predict", json={"model": "double", "inputs": X}).status_code == 200


def test_load_parameters_are_refused_and_unload_dependents_is_accepted():
    with running(FakeRepository([doubler()]), explicit()) as s:
        r = s.http.post("/v2/repository/models/double/load", json={"parameters": {"config": "{}"}})
        assert r.status_code == 400 and r.json()["received"] == ["config"], r.text
        r = s.http.post("/v2/repository/models/double/unload", json={"parameters": {"unload_dependents": True}})
        assert r.status_code == 200 and r.json()["result"] == "unloaded 1", r.text


def test_model_control_needs_an_api_key_when_keys_are_set():
    import grpc

    from service.grpc import kserve_v2_pb2 as pb
    from service.grpc import kserve_v2_pb2_grpc as pb_grpc

    with running(FakeRepository([doubler()]), explicit(api_keys=["sesame"])) as s:
        for action in ("unload", "load"):
            assert s.http.post(f"/v2/repository/models/double/{action}").status_code == 401
            r = s.http.post(f"/v2/repository/models/double/{action}", headers={"authorization": "Bearer nope"})
            assert r.status_code == 403
        stub = pb_grpc.GRPCInferenceServiceStub(s.channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="double"))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert s.manager.entries["double"].state == "READY"       # nothing was unloaded
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="double"),
                                   metadata=[("authorization", "Bearer sesame")])
        assert s.manager.entries["double"].state == "UNLOADED"
        r = s.http.post("/v2/repository/models/double/load", headers={"authorization": "Bearer sesame"})
        assert r.status_code == 200 and r.json()["result"] == "loaded 1"


def test_concurrent_loads_and_unloads_leave_one_consistent_state():
    """Load and unload race from several clients: each call is answered, and the model ends in the state of
    whichever call ran last (the manager serialises them)."""
    repo = FakeRepository([doubler()])
    with running(repo, explicit()) as s, ThreadPoolExecutor(8) as pool:
        actions = ["unload", "load"] * 8
        answers = list(pool.map(lambda a: s.http.post(f"/v2/repository/models/double/{a}"), actions))
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
        state = s.manager.entries["double"].state
        assert state in ("READY", "UNLOADED")
        r = s.http.post("/v2/repository/models/double/load")
        assert r.status_code == 200 and s.manager.entries["double"].versions == ["1"]
        assert s.http.post("/predict", json={"model": "double", "inputs": X}).status_code == 200

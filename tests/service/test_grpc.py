"""KServe v2 / Triton gRPC (service.grpc) and Triton's statistics extension (service.protocols.stats),
through the official ``tritonclient.grpc`` / ``tritonclient.http`` clients, against the real app
(uvicorn on 127.0.0.1) with the gRPC server started next to it on the app's event loop, as the app's
lifespan will do it (see :func:`with_grpc`). Small pure-Python models (tests/service/fakes.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from contextlib import asynccontextmanager, contextmanager

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app
from service.manager import ModelManager
from service.metrics import Metrics
from service.protocols import stats

from .fakes import PATIENCE_S, FakeRepository, doubler, pixels, scaler, wait_until
from .server import serve
from .test_app import wait_ready

tc_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tc_http  # noqa: E402
from tritonclient.grpc import model_config_pb2 as triton_config_pb2  # noqa: E402
from tritonclient.grpc import service_pb2 as triton_pb2  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as triton_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


# ---------------------------------------------------------------- harness
def with_grpc(app):
    """What the app's lifespan and router will do: the statistics routes ahead of the KServe ones (so
    ``/v2/models/stats`` is not read as the metadata of a model named "stats"), and the gRPC server
    started after the manager, stopped at shutdown. Here the port is any free one (``app.state.grpc.port``)."""
    from service.grpc import start_grpc_server

    before = len(app.router.routes)
    app.include_router(stats.router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            a.state.grpc = await start_grpc_server(a.state.settings, a.state.manager, a.state.metrics, port=0)
            try:
                yield state
            finally:
                await a.state.grpc.stop(5.0)

    app.router.lifespan_context = lifespan
    return app


class Server:
    def __init__(self, srv, app, http, models):
        self.srv, self.app, self.http, self.models = srv, app, http, models
        self.grpc_url = f"127.0.0.1:{app.state.grpc.port}"
        self.triton = tc_grpc.InferenceServerClient(self.grpc_url)
        self.triton_http = tc_http.InferenceServerClient(srv.url.removeprefix("http://"))
        self.channel = grpc.insecure_channel(self.grpc_url)
        self.stub = triton_pb2_grpc.GRPCInferenceServiceStub(self.channel)   # Triton's own stubs: raw requests
        self.registry = app.state.metrics.registry

    def close(self):
        self.triton.close()
        self.triton_http.close()
        self.channel.close()


@contextmanager
def running(models, settings=None, **repo_kw):
    settings = settings or Settings(max_body_bytes=256 * 1024)
    # the app's own lifespan starts no gRPC server (grpc_port 0): with_grpc starts one on a free port
    settings = settings.model_copy(update={"grpc_port": 0})
    metrics = Metrics(CollectorRegistry())
    manager = ModelManager(settings, metrics, FakeRepository(models, **repo_kw))
    app = with_grpc(create_app(settings, manager=manager, metrics=metrics))
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        wait_ready(http)
        s = Server(srv, app, http, {m.name: m for m in models})
        try:
            yield s
        finally:
            s.close()


@pytest.fixture(scope="module")
def server():
    with running([doubler(), pixels(), scaler("half", factor=0.5)]) as s:
        yield s


def grpc_input(name, arr, datatype=None):
    t = tc_grpc.InferInput(name, list(arr.shape), datatype or tc_grpc_dtype(arr))
    t.set_data_from_numpy(arr)
    return t


def tc_grpc_dtype(arr):
    from tritonclient.utils import np_to_triton_dtype
    return np_to_triton_dtype(arr.dtype)


def http_infer(s, model, name, arr, **kw):
    t = tc_http.InferInput(name, list(arr.shape), tc_grpc_dtype(arr))
    t.set_data_from_numpy(arr, binary_data=True)
    return s.triton_http.infer(model, [t], **kw)


def grpc_error(fn) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        fn()
    return e.value


# ---------------------------------------------------------------- wire compatibility
def _field_key(f):
    return (f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else None,
            f.enum_type.full_name if f.enum_type else None)


def test_our_proto_matches_tritons_field_for_field():
    """Every message, field (number, type, cardinality), enum value and RPC of protos/kserve_v2.proto is
    Triton's (as tritonclient ships it), and both load in one process (ours lives in a private pool)."""
    from service.grpc import kserve_v2_pb2 as ours

    def compare(mine, theirs, path):
        fields = {f.name: f for f in theirs.fields}
        for f in mine.fields:
            assert f.name in fields, f"{path}.{f.name} is not in Triton's {theirs.full_name}"
            assert _field_key(f) == _field_key(fields[f.name]), f"{path}.{f.name}"
        for n in mine.nested_types:
            compare(n, theirs.nested_types_by_name[n.name], f"{path}.{n.name}")
        for e in mine.enum_types:
            values = {v.name: v.number for v in theirs.enum_types_by_name[e.name].values}
            assert all(values[v.name] == v.number for v in e.values), f"{path}.{e.name}"

    checked = 0
    for name, mine in ours.DESCRIPTOR.message_types_by_name.items():
        theirs = triton_pb2.DESCRIPTOR.message_types_by_name.get(name) or \
            triton_config_pb2.DESCRIPTOR.message_types_by_name[name]
        compare(mine, theirs, name)
        checked += 1
    for e in ours.DESCRIPTOR.enum_types_by_name.values():
        values = {v.name: v.number for v in triton_config_pb2.DESCRIPTOR.enum_types_by_name[e.name].values}
        assert {v.name: v.number for v in e.values} == values
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    for m in service.methods:
        t = theirs.methods_by_name[m.name]
        assert (m.input_type.full_name, m.output_type.full_name) == (t.input_type.full_name, t.output_type.full_name)
    assert len(service.methods) == 11 and checked == 37


# ---------------------------------------------------------------- health and metadata
def test_health_and_server_metadata(server):
    assert server.triton.is_server_live() and server.triton.is_server_ready()
    assert server.triton.is_model_ready("double") and server.triton.is_model_ready("double", "1")
    meta = server.triton.get_server_metadata()
    http_meta = server.http.get("/v2").json()
    assert (meta.name, meta.version) == (http_meta["name"], http_meta["version"])
    assert set(meta.extensions) == set(http_meta["extensions"]) | {"statistics"}


def test_readiness_of_unknown_model_or_version_is_not_found(server):
    e = grpc_error(lambda: server.triton.is_model_ready("nope"))
    assert e.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in e.message()
    e = grpc_error(lambda: server.triton.is_model_ready("double", "7"))
    assert e.status() == "StatusCode.NOT_FOUND" and "serving version 1" in e.message()


def test_model_metadata_equals_the_http_answer(server):
    for name in ("double", "pixels"):
        http = server.http.get(f"/v2/models/{name}").json()
        for version in ("", "1"):
            m = server.triton.get_model_metadata(name, version)
            assert (m.name, list(m.versions), m.platform) == (http["name"], http["versions"], http["platform"])
            for got, want in ((m.inputs, http["inputs"]), (m.outputs, http["outputs"])):
                assert [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in got] == want
    e = grpc_error(lambda: server.triton.get_model_metadata("double", "3"))
    assert e.status() == "StatusCode.NOT_FOUND"


def test_model_config_equals_the_http_answer(server):
    """The gRPC config, decoded by Triton's own ModelConfig message, is the HTTP JSON config."""
    from google.protobuf import json_format

    for name in ("double", "pixels"):
        got = server.triton.get_model_config(name).config
        want = json_format.ParseDict(server.http.get(f"/v2/models/{name}/config").json(),
                                     triton_config_pb2.ModelConfig())
        assert got == want
        assert got.max_batch_size == 64 and got.input[0].name == server.models[name].inputs[0].name
    assert server.triton.get_model_config("double", "1").config.name == "double"


# ---------------------------------------------------------------- inference
def test_infer_with_raw_tensors_equals_http_and_numpy(server):
    x = np.array([[1, 2, 3], [4, 5, 6.5]], dtype=np.float32)
    r = server.triton.infer("double", [grpc_input("x", x)], request_id="req-1")
    resp = r.get_response()
    assert (resp.model_name, resp.model_version, resp.id) == ("double", "1", "req-1")
    assert len(resp.raw_output_contents) == 2          # raw in, raw out
    h = http_infer(server, "double", "x", x)
    for out, want in (("y", x * 2), ("sum", x.sum(axis=1))):
        np.testing.assert_array_equal(r.as_numpy(out), want)
        np.testing.assert_array_equal(r.as_numpy(out), h.as_numpy(out))
        assert r.as_numpy(out).dtype == np.float32
    only_sum = server.triton.infer("double", [grpc_input("x", x)], outputs=[tc_grpc.InferRequestedOutput("sum")])
    assert [o.name for o in only_sum.get_response().outputs] == ["sum"]


def test_infer_uint8_raw_input_and_classification_equal_http(server):
    img = np.array([[[250, 250], [250, 250]], [[10, 20], [30, 40]]], dtype=np.uint8)
    r = server.triton.infer("pixels", [grpc_input("image", img)],
                            outputs=[tc_grpc.InferRequestedOutput("prob", class_count=2),
                                     tc_grpc.InferRequestedOutput("mean")])
    t = tc_http.InferInput("image", list(img.shape), "UINT8")
    t.set_data_from_numpy(img, binary_data=True)
    h = server.triton_http.infer("pixels", [t], outputs=[tc_http.InferRequestedOutput("prob", class_count=2),
                                                         tc_http.InferRequestedOutput("mean")])
    np.testing.assert_array_equal(r.as_numpy("mean"), img.reshape(2, -1).mean(axis=1).astype(np.float32))
    np.testing.assert_array_equal(r.as_numpy("mean"), h.as_numpy("mean"))
    assert r.as_numpy("prob").tolist() == h.as_numpy("prob").tolist()
    assert r.as_numpy("prob")[0].tolist() == [b"0.980392:1:b", b"0.019608:0:a"]


def _typed_request(model, name, datatype, shape, field, values, version=""):
    req = triton_pb2.ModelInferRequest(model_name=model, model_version=version, id="typed")
    t = req.inputs.add(name=name, datatype=datatype, shape=shape)
    getattr(t.contents, field).extend(values)
    return req


def test_infer_with_typed_contents_answers_typed_contents(server):
    """A request whose inputs are typed ``contents`` (no raw bytes) gets typed contents back."""
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    resp = server.stub.ModelInfer(_typed_request("double", "x", "FP32", [2, 3], "fp32_contents", x.ravel().tolist()))
    assert not resp.raw_output_contents and resp.id == "typed" and resp.model_version == "1"
    outs = {o.name: o for o in resp.outputs}
    assert (outs["y"].datatype, list(outs["y"].shape)) == ("FP32", [2, 3])
    np.testing.assert_array_equal(np.array(outs["y"].contents.fp32_contents).reshape(2, 3), x * 2)
    np.testing.assert_array_equal(outs["sum"].contents.fp32_contents, x.sum(axis=1))
    # FP64 values for an FP32 input, integers for a uint8 input: cast as over HTTP
    resp = server.stub.ModelInfer(_typed_request("double", "x", "FP64", [1, 3], "fp64_contents", [0.5, 1.5, 2.5]))
    assert list(resp.outputs[0].contents.fp32_contents) == [1.0, 3.0, 5.0]
    resp = server.stub.ModelInfer(_typed_request("pixels", "image", "UINT8", [1, 2, 2], "uint_contents", [0, 255, 0, 255]))
    assert {o.name: list(o.contents.fp32_contents) for o in resp.outputs}["prob"] == [0.5, 0.5]
    # classification as typed BYTES
    req = _typed_request("pixels", "image", "UINT8", [1, 2, 2], "uint_contents", [255] * 4)
    req.outputs.add(name="prob").parameters["classification"].int64_param = 1
    resp = server.stub.ModelInfer(req)
    assert list(resp.outputs[0].contents.bytes_contents) == [b"1.000000:1:b"]


@pytest.mark.parametrize("datatype,field,values,message", [
    ("UINT8", "uint_contents", [0, 256, 0, 0], "must hold integers in [0, 255] for UINT8"),
    ("UINT8", "fp32_contents", [0, 1, 2, 3], "UINT8 data goes in contents.uint_contents"),
    ("UINT8", "uint_contents", [0, 1, 2], "has 3 elements, shape [1, 2, 2] needs 4"),
    ("FP16", "fp32_contents", [0, 1, 2, 3], "FP16 has no typed contents field"),
])
def test_typed_contents_mistakes_are_invalid_argument(server, datatype, field, values, message):
    with pytest.raises(grpc.RpcError) as e:
        server.stub.ModelInfer(_typed_request("pixels", "image", datatype, [1, 2, 2], field, values))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in e.value.details()


def test_pinned_version_runs_on_it_or_is_not_found(server):
    x = np.ones((1, 3), np.float32)
    r = server.triton.infer("half", [grpc_input("x", x)], model_version="1")
    np.testing.assert_array_equal(r.as_numpy("y"), x * 0.5)
    assert r.get_response().model_version == "1"
    e = grpc_error(lambda: server.triton.infer("half", [grpc_input("x", x)], model_version="2"))
    http = server.http.post("/v2/models/half/versions/2/infer", json={
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 1, 1]}]})
    assert e.status() == "StatusCode.NOT_FOUND" and http.status_code == 404
    assert http.json()["error"] in e.message()


def test_invalid_requests_get_invalid_argument_with_the_http_message(server):
    x = np.ones((1, 4), np.float32)         # the model takes [N, 3]
    e = grpc_error(lambda: server.triton.infer("double", [grpc_input("x", x)]))
    h = grpc_error(lambda: http_infer(server, "double", "x", x))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and h.status() == "400"
    assert "input 'x' has shape [1, 4], expected [N, 3]" in e.message() and h.message() in e.message()
    e = grpc_error(lambda: server.triton.infer("double", [grpc_input("nope", np.ones((1, 3), np.float32))]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "unknown input 'nope'" in e.message()
    e = grpc_error(lambda: server.triton.infer("double", [grpc_input("x", np.array([[1, np.nan, 3]], np.float32))]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "NaN or Inf" in e.message()
    e = grpc_error(lambda: server.triton.infer("double", [grpc_input("x", np.ones((1, 3), np.float32))],
                                               outputs=[tc_grpc.InferRequestedOutput("nope")]))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "unknown output 'nope'" in e.message()
    # raw bytes that do not match the declared shape
    req = triton_pb2.ModelInferRequest(model_name="double")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    req.raw_input_contents.append(b"\0" * 8)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.ModelInfer(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holds 8 bytes" in err.value.details()


def test_unknown_model_is_not_found(server):
    e = grpc_error(lambda: server.triton.infer("nope", [grpc_input("x", np.ones((1, 3), np.float32))]))
    assert e.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in e.message()


def _hold(model, triton, x):
    """Close the model's gate and put one request inside it (returns the thread running that request)."""
    model.gate.clear()
    model.entered.clear()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", triton.infer("double", [grpc_input("x", x)])))
    t.start()
    assert model.entered.wait(PATIENCE_S), "the first request never reached the model"
    return t, result


def test_full_queue_is_resource_exhausted_with_a_retry_hint():
    with running([doubler()], Settings(batching={"max_batch_size": 1, "max_queue_size": 2})) as s:
        model, x = s.models["double"], np.ones((1, 3), np.float32)
        first, _ = _hold(model, s.triton, x)
        queued = []
        try:
            threads = [threading.Thread(target=lambda: queued.append(s.triton.infer("double", [grpc_input("x", x)])))
                       for _ in range(2)]
            for t in threads:
                t.start()
            wait_until(lambda: s.registry.get_sample_value("tpserve_queue_rows", {"model": "double", "version": "1"}) == 2,
                       "both requests to be queued behind the held batch")
            req = triton_pb2.ModelInferRequest(model_name="double")
            req.inputs.add(name="x", datatype="FP32", shape=[1, 3])
            req.raw_input_contents.append(x.tobytes())
            with pytest.raises(grpc.RpcError) as e:
                s.stub.ModelInfer(req)
            e2 = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", x)]))
        finally:
            model.gate.set()
        first.join(PATIENCE_S)
        for t in threads:
            t.join(PATIENCE_S)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue full: 2 rows waiting, limit 2; retry in 1 s" in e.value.details()
        trailers = dict(e.value.trailing_metadata())
        assert trailers["retry-after"] == "1" and trailers["grpc-retry-pushback-ms"] == "1000"
        assert e2.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert len(queued) == 2 and all(np.array_equal(r.as_numpy("y"), x * 2) for r in queued)
        assert s.registry.get_sample_value("tpserve_requests_total",
                                           {"model": "double", "route": "grpc:infer", "code": "429"}) == 2


def test_deadline_passing_in_the_queue_is_deadline_exceeded_and_never_computed():
    with running([doubler()]) as s:
        model = s.models["double"]
        first, _ = _hold(model, s.triton, np.zeros((1, 3), np.float32))
        try:
            # Triton's per-request timeout parameter, in microseconds: expires while the batch is held
            e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", np.full((1, 3), 9, np.float32))],
                                                  timeout=50_000))
        finally:
            model.gate.set()
        first.join(PATIENCE_S)
        assert e.status() == "StatusCode.DEADLINE_EXCEEDED" and "deadline" in e.message()
        r = s.triton.infer("double", [grpc_input("x", np.full((1, 3), 7, np.float32))])   # FIFO: 9 is gone
        np.testing.assert_array_equal(r.as_numpy("y"), np.full((1, 3), 14, np.float32))
        assert not any((b == 9).any() for b in model.seen)
        e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", np.ones((1, 3), np.float32))], timeout=0))
        assert e.status() == "StatusCode.INVALID_ARGUMENT" and "parameters.timeout" in e.message()


def test_a_client_deadline_cancels_the_queued_request_and_counts_504():
    with running([doubler()]) as s:
        model = s.models["double"]
        first, _ = _hold(model, s.triton, np.zeros((1, 3), np.float32))
        try:
            e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", np.full((1, 3), 9, np.float32))],
                                                  client_timeout=0.2))
            assert e.status() == "StatusCode.DEADLINE_EXCEEDED"
            wait_until(lambda: s.registry.get_sample_value(
                "tpserve_requests_total", {"model": "double", "route": "grpc:infer", "code": "504"}) == 1,
                "the cancelled call to be counted")
        finally:
            model.gate.set()
        first.join(PATIENCE_S)
        assert not any((b == 9).any() for b in model.seen)


def test_a_model_that_failed_to_load_is_unavailable():
    with running([doubler()], fail_load=["broken"]) as s:
        assert not s.triton.is_server_ready()
        assert not s.triton.is_model_ready("broken")
        e = grpc_error(lambda: s.triton.infer("broken", [grpc_input("x", np.ones((1, 3), np.float32))]))
        h = s.http.post("/v2/models/broken/infer", json={"inputs": []})
        assert e.status() == "StatusCode.UNAVAILABLE" and h.status_code == 503
        assert "is FAILED: ValueError: checkpoint for broken is corrupt" in e.message()
        assert h.json()["error"] in e.message()
        index = s.triton.get_model_repository_index()
        states = {m.name: (m.state, m.reason) for m in index.models}
        assert states == {"double": ("READY", ""),
                          "broken": ("UNAVAILABLE", "ValueError: checkpoint for broken is corrupt")}
        ready_only = s.stub.RepositoryIndex(triton_pb2.RepositoryIndexRequest(ready=True))
        assert [m.name for m in ready_only.models] == ["double"]


# ---------------------------------------------------------------- repository
def test_repository_index_load_and_unload(server):
    index = server.triton.get_model_repository_index(as_json=True)["models"]
    http = server.http.post("/v2/repository/index").json()
    assert sorted(index, key=lambda m: m["name"]) == sorted(http, key=lambda m: m["name"])
    server.triton.load_model("double")                   # nothing newer: still serving version 1
    assert server.triton.is_model_ready("double", "1")
    e = grpc_error(lambda: server.triton.load_model("nope"))
    assert e.status() == "StatusCode.NOT_FOUND"
    e = grpc_error(lambda: server.triton.unload_model("double"))
    # the default model control is 'poll': unloading would be undone by the next poll, so it is refused
    assert e.status() == "StatusCode.FAILED_PRECONDITION" and "TPSERVE_MODEL_CONTROL=explicit" in e.message()
    assert server.triton.is_model_ready("double")


# ---------------------------------------------------------------- API keys
def test_api_keys_guard_every_rpc_but_the_open_health_ones():
    settings = Settings(max_body_bytes=256 * 1024, api_keys=["k1", "k2"])
    with running([doubler()], settings) as s:
        x = np.ones((1, 3), np.float32)
        assert s.triton.is_server_live() and s.triton.is_server_ready()      # open_paths: /v2/health/*
        e = grpc_error(lambda: s.triton.infer("double", [grpc_input("x", x)]))
        assert e.status() == "StatusCode.UNAUTHENTICATED"
        e = grpc_error(lambda: s.triton.get_model_metadata("double", headers={"authorization": "Bearer nope"}))
        assert e.status() == "StatusCode.PERMISSION_DENIED"
        r = s.triton.infer("double", [grpc_input("x", x)], headers={"authorization": "Bearer k2"})
        np.testing.assert_array_equal(r.as_numpy("y"), x * 2)
        e = grpc_error(lambda: s.triton.get_inference_statistics())
        assert e.status() == "StatusCode.UNAUTHENTICATED"


# ---------------------------------------------------------------- statistics
def _traffic(s):
    """Batches of 3, 1 and 2 rows over gRPC, one of 1 row over HTTP, one refused request (400)."""
    for rows in (3, 1, 2):
        s.triton.infer("double", [grpc_input("x", np.ones((rows, 3), np.float32))])
    http_infer(s, "double", "x", np.ones((1, 3), np.float32))
    grpc_error(lambda: s.triton.infer("double", [grpc_input("x", np.ones((1, 4), np.float32))]))
    assert s.models["double"].batch_sizes == [3, 1, 2, 1]


def _value(s, name, **labels):
    return s.registry.get_sample_value(name, labels) or 0.0


def _ns(seconds):
    return round(seconds * 1e9)


def _check_model_stats(s, st):
    """``st``: one model's statistics as JSON (tritonclient's as_json of either protocol)."""
    num = lambda v: int(v)       # noqa: E731 - gRPC's JSON writes uint64 as strings
    inf = st["inference_stats"]
    assert st["name"] == "double" and st["version"] == "1"
    assert num(st["inference_count"]) == 7 and num(st["execution_count"]) == 4
    assert num(inf["success"]["count"]) == 4 and num(inf["fail"]["count"]) == 1
    assert num(inf["queue"]["count"]) == 4
    assert num(inf["queue"]["ns"]) == _ns(_value(s, "tpserve_queue_duration_seconds_sum", model="double", version="1"))
    compute_s = _value(s, "tpserve_inference_duration_seconds_sum", model="double", version="1", device="/cpu:0")
    assert num(inf["compute_infer"]["count"]) == 4 and num(inf["compute_infer"]["ns"]) == _ns(compute_s)
    assert num(inf["compute_input"]["count"]) == 4
    sizes = {num(b["batch_size"]): num(b["compute_infer"]["count"]) for b in st["batch_stats"]}
    assert sizes == {1: 2, 2: 1, 3: 1}        # every exact size (the fake model saw [3, 1, 2, 1])
    # each size's compute time and the success/failure times are the counters /metrics exports for them
    for b in st["batch_stats"]:
        size_s = _value(s, "tpserve_batch_compute_seconds_total", model="double", version="1",
                        batch_size=str(num(b["batch_size"])))
        assert size_s > 0 and num(b["compute_infer"]["ns"]) == _ns(size_s)
    ok_s = _value(s, "tpserve_request_seconds_total", model="double", route="grpc:infer", code="200") + \
        _value(s, "tpserve_request_seconds_total", model="double", route="v2:infer", code="200")
    failed_s = _value(s, "tpserve_request_seconds_total", model="double", route="grpc:infer", code="400")
    assert num(inf["success"]["ns"]) == _ns(ok_s) and num(inf["fail"]["ns"]) == _ns(failed_s) and failed_s > 0


def test_statistics_over_http_and_grpc_agree_with_the_metrics():
    with running([doubler(), pixels()], Settings(batching={"max_batch_size": 4})) as s:
        _traffic(s)
        by_http = s.triton_http.get_inference_statistics("double")["model_stats"]
        by_grpc = s.triton.get_inference_statistics("double", as_json=True)["model_stats"]
        assert len(by_http) == len(by_grpc) == 1
        _check_model_stats(s, by_http[0])
        _check_model_stats(s, by_grpc[0])
        pinned = s.triton.get_inference_statistics("double", "1").model_stats[0]
        assert pinned.execution_count == 4
        assert s.triton_http.get_inference_statistics("double", "1")["model_stats"][0]["execution_count"] == 4
        everything = s.triton_http.get_inference_statistics()["model_stats"]
        assert [m["name"] for m in everything] == ["double", "pixels"]
        assert everything[1]["execution_count"] == 0 and everything[1]["batch_stats"] == []
        assert [m.name for m in s.triton.get_inference_statistics().model_stats] == ["double", "pixels"]
        # a version that is not served, an unknown model: 404 / NOT_FOUND
        assert s.http.get("/v2/models/double/versions/2/stats").status_code == 404
        assert s.http.get("/v2/models/nope/stats").status_code == 404
        assert grpc_error(lambda: s.triton.get_inference_statistics("double", "2")).status() == "StatusCode.NOT_FOUND"
        assert grpc_error(lambda: s.triton.get_inference_statistics("nope")).status() == "StatusCode.NOT_FOUND"


def test_statistics_read_a_multiprocess_registry(tmp_path):
    """In the multi-process server the registry is prometheus_client's MultiProcessCollector over every
    process's files: the statistics read the same numbers from it (a separate interpreter: the
    multiprocess mode is chosen when prometheus_client is imported)."""
    code = textwrap.dedent("""
        import json, types
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
        from service.metrics import Metrics
        from service.protocols.stats import model_statistics

        m = Metrics(CollectorRegistry())
        obs = m.observer("double", ["/cpu:0"], "4")
        for rows, wait, compute in ((1, 0.25, 0.5), (2, 0.125, 0.25), (3, 0.5, 1.0)):
            obs.on_batch(rows, 1, [wait], compute, 0)
            m.observe_request("double", "grpc:infer", "200", 1.0)
        m.observe_request("double", "v2:infer", "400", 0.5)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        entry = types.SimpleNamespace(name="double", version="4", versions=["4"])
        manager = types.SimpleNamespace(entries={"double": entry}, find=lambda n: entry)
        print(json.dumps(model_statistics(manager, registry)))
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    import json

    st = json.loads(out.stdout)["model_stats"][0]
    inf = st["inference_stats"]
    assert (st["version"], st["execution_count"], st["inference_count"]) == ("4", 3, 6)
    assert inf["success"] == {"count": 3, "ns": 3_000_000_000} and inf["fail"] == {"count": 1, "ns": 500_000_000}
    assert inf["queue"] == {"count": 3, "ns": 875_000_000}
    assert inf["compute_infer"] == {"count": 3, "ns": 1_750_000_000}
    assert [(b["batch_size"], b["compute_infer"]) for b in st["batch_stats"]] == [
        (1, {"count": 1, "ns": 500_000_000}), (2, {"count": 1, "ns": 250_000_000}), (3, {"count": 1, "ns": 1_000_000_000})]


# ---------------------------------------------------------------- settings and start-up
def test_grpc_port_setting(monkeypatch):
    monkeypatch.delenv("TPSERVE_GRPC_PORT", raising=False)
    assert Settings().grpc_port == 8001
    monkeypatch.setenv("TPSERVE_GRPC_PORT", "0")
    assert Settings().grpc_port == 0


def test_a_taken_port_fails_loudly_instead_of_being_shared():
    import asyncio

    from service.grpc import start_grpc_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(grpc_port=port)
        with pytest.raises(OSError, match=f"cannot listen for gRPC on 127.0.0.1:{port}"):
            asyncio.run(start_grpc_server(settings, manager=None, metrics=None))

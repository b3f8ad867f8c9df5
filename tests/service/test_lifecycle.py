"""Model versions and the service's lifecycle: which version answers, hot swaps, pins, failed
versions, roll back, shutdown within one deadline, nothing leaked, one liveness answer.

Events are ordered with events the fake models set (``HeldModel.entered``), never with sleeps, and
nothing here asserts an elapsed time: a busy machine stretches durations, not the order of events.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from service import Settings, create_app
from service.batcher import DynamicBatcher, ShuttingDown
from service.inference import infer
from service.manager import ModelManager
from service.metrics import Metrics
from service.model import ModelConfig
from service.repository import ModelRepository
from service.settings import BatchingOptions

from .fakes import (
    PATIENCE_S,
    FakeRepository,
    HeldModel,
    VersionedRepository,
    doubler,
    pixels,
    scaler,
    wait_until,
)
from .realmodel import REPO, ROOT
from .server import serve


@pytest.fixture
def server():
    """``server(repository, settings) -> (client, app, registry)``: the app on a real uvicorn server."""
    with contextlib.ExitStack() as stack:
        def make(repository, settings):
            registry = CollectorRegistry()
            app = create_app(settings, registry=registry, repository=repository)
            srv = stack.enter_context(serve(app))
            client = stack.enter_context(httpx.Client(base_url=srv.url, timeout=PATIENCE_S))

            def loaded():
                r = client.get("/readyz")
                return r.status_code == 200 or all("LOADING" not in x and "scanned" not in x
                                                   for x in r.json()["reasons"])

            wait_until(loaded, "every model loaded")
            return client, app, registry

        yield make


def _settings(**kw):
    return Settings(**{"poll_interval_s": 0, "max_body_bytes": 1 << 20, **kw})


def _npy(rows) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(rows, np.float32))
    return buf.getvalue()


def _png(red) -> bytes:
    """A 1-pixel-high PNG whose red channel is ``red``."""
    rgb = np.zeros((1, len(red), 3), np.uint8)
    rgb[0, :, 0] = red
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _v2(rows):
    return {"inputs": [{"name": "x", "shape": [len(rows), 3], "datatype": "FP32", "data": np.ravel(rows).tolist()}]}


def _load(client, name="scale"):
    return client.post(f"/v2/repository/models/{name}/load")


# ----------------------------------------------------------------------------- the version that answered
def test_every_answer_names_the_version_that_computed_it_across_a_swap(server):
    """Four requests (KServe v2, .npy, image, JSON) in one batch on version 1; version 2 is swapped in
    while that batch runs: each answer still says version 1, and holds version 1's numbers."""
    v1, v2 = HeldModel(scaler(factor=1.0, version="1")), scaler(factor=2.0, version="2")
    repo = VersionedRepository("scale", {1: v1})
    # the four single-row requests form one batch: a free replica waits for 4 rows
    client, _, _ = server(repo, _settings(batching=BatchingOptions(max_batch_size=4, max_queue_delay_ms=10_000)))
    with ThreadPoolExecutor(4) as pool:
        sent = {
            "v2": pool.submit(client.post, "/v2/models/scale/infer", json=_v2([[1, 2, 3]])),
            "npy": pool.submit(client.post, "/predict?model=scale", content=_npy([[1, 2, 3]]),
                               headers={"content-type": "application/x-npy"}),
            "image": pool.submit(client.post, "/predict?model=scale&top_k=1", content=_png([1, 2, 3]),
                                 headers={"content-type": "image/png"}),
            "json": pool.submit(client.post, "/predict", json={"model": "scale", "inputs": [[1, 2, 3]]}),
        }
        assert v1.entered.wait(PATIENCE_S)
        repo.models[2] = v2
        r = _load(client)
        assert r.status_code == 200 and r.json()["result"] == "loaded 2", r.text
        after = client.post("/predict", json={"inputs": [[1, 2, 3]] * 4}).json()   # fills a batch at once
        v1.release()
        answers = {k: f.result() for k, f in sent.items()}
    assert after["version"] == "2" and after["outputs"]["y"] == [[2, 4, 6]] * 4
    assert v1.batch_sizes == [4], "the four requests did not share one batch of version 1"
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 200)
    v2_body, npy, image, json_ = (answers[k].json() for k in ("v2", "npy", "image", "json"))
    assert v2_body["model_version"] == "1" and v2_body["outputs"][0]["data"] == [1, 2, 3]
    assert npy["version"] == "1" and npy["outputs"]["y"] == [[1, 2, 3]]
    assert image["version"] == "1" and image["top_k"][0]["score"] == 3.0      # version 2 would say 6
    assert json_["version"] == "1" and json_["outputs"]["y"] == [[1, 2, 3]]
    assert v1.closed.wait(PATIENCE_S), "the retired version was never closed"


def test_a_pinned_request_is_never_served_by_another_version(server):
    """The swap happens after the lookup, while the request body is still arriving: the pinned request
    gets 404 listing the loaded version, the unpinned one runs on (and names) version 2."""
    v1, v2 = scaler(factor=1.0, version="1"), scaler(factor=2.0, version="2")
    repo = VersionedRepository("scale", {1: v1})
    client, app, _ = server(repo, _settings())
    manager = app.state.manager
    looked_up, both_looked_up, swapped = [], threading.Event(), threading.Event()
    lookup = manager.get

    def get(name, version=None):
        entry = lookup(name, version)
        looked_up.append(version)
        if len(looked_up) == 2:
            both_looked_up.set()
        return entry

    manager.get = get

    def body(rows):
        raw = orjson.dumps(_v2(rows))
        yield raw[:10]
        swapped.wait(PATIENCE_S)        # the rest of the body arrives after the swap
        yield raw[10:]

    with ThreadPoolExecutor(2) as pool:
        pinned = pool.submit(client.post, "/v2/models/scale/versions/1/infer", content=body([[1, 1, 1]]))
        unpinned = pool.submit(client.post, "/v2/models/scale/infer", content=body([[1, 1, 1]]))
        assert both_looked_up.wait(PATIENCE_S)
        repo.models[2] = v2
        assert _load(client).json()["result"] == "loaded 2"
        swapped.set()
        pinned, unpinned = pinned.result(), unpinned.result()
    manager.get = lookup
    assert pinned.status_code == 404, pinned.text
    assert pinned.json()["expected"] == ["2"] and "version '1' is not loaded" in pinned.json()["error"]
    assert unpinned.status_code == 200 and unpinned.json()["model_version"] == "2"
    assert unpinned.json()["outputs"][0]["data"] == [2, 2, 2]
    assert v1.batch_sizes == [] and v2.batch_sizes == [1]
    # pinned at lookup, in every protocol: 404 naming the loaded version, and nothing runs
    for r in (client.post("/v2/models/scale/versions/1/infer", json=_v2([[1, 1, 1]])),
              client.post("/predict?version=1", json={"inputs": [[1, 1, 1]]}),
              client.post("/predict", json={"version": "1", "inputs": [[1, 1, 1]]}),
              client.post("/predict?model=scale&version=1", content=_npy([[1, 1, 1]]),
                          headers={"content-type": "application/x-npy"}),
              client.post("/v1/models/scale/versions/1:predict", json={"instances": [[1, 1, 1]]})):
        assert r.status_code == 404 and r.json()["expected"] == ["2"], r.text
    assert v1.batch_sizes == [] and v2.batch_sizes == [1]


def test_requests_left_on_a_retired_version_move_to_the_new_one_only_when_unpinned(server):
    """Version 1 hangs: after the swap its queue cannot drain before the shutdown timeout. The request
    in its running batch and the unpinned one queued behind it are answered by version 2; the request
    pinned to version 1 gets 404, and the abandoned batch is counted."""
    v1, v2 = HeldModel(scaler(factor=1.0, version="1")), scaler(factor=2.0, version="2")
    repo = VersionedRepository("scale", {1: v1})
    client, app, registry = server(repo, _settings(shutdown_timeout_s=0.2,
                                                   batching=BatchingOptions(max_batch_size=1)))
    batcher = app.state.manager.entries["scale"].batcher
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(client.post, "/predict", json={"inputs": [[1, 1, 1]]})
        assert v1.entered.wait(PATIENCE_S)
        pinned = pool.submit(client.post, "/v2/models/scale/versions/1/infer", json=_v2([[2, 2, 2]]))
        queued = pool.submit(client.post, "/v2/models/scale/infer", json=_v2([[3, 3, 3]]))
        wait_until(lambda: batcher.queued_rows == 2, "two requests queued behind the hung batch")
        repo.models[2] = v2
        assert _load(client).json()["result"] == "loaded 2"
        running, pinned, queued = running.result(), pinned.result(), queued.result()
    assert running.status_code == 200 and running.json()["version"] == "2", running.text
    assert running.json()["outputs"]["y"] == [[2, 2, 2]]
    assert queued.status_code == 200 and queued.json()["model_version"] == "2"
    assert queued.json()["outputs"][0]["data"] == [6, 6, 6]
    assert pinned.status_code == 404 and pinned.json()["expected"] == ["2"], pinned.text
    assert v1.closed.wait(PATIENCE_S) and v1.finished.wait(PATIENCE_S)    # close() let the hung batch end
    assert v1.batch_sizes == [1]            # only the hung batch ever ran on version 1
    assert registry.get_sample_value("tpserve_abandoned_batches_total", {"model": "scale"}) == 1


# ----------------------------------------------------------------------------- failed versions, roll back
def test_a_failed_version_is_not_rebuilt_until_its_files_change(server, tmp_path):
    """The real repository: a corrupt version 2 is tried once; /load again answers the remembered
    error without building anything; new files for version 2 are tried (and served)."""
    repo_dir = tmp_path / "repo"
    shutil.copytree(REPO / "digits", repo_dir / "digits", ignore=shutil.ignore_patterns("2", "3"))
    settings = _settings(model_repository=repo_dir, warmup=False, device="cpu", intra_op_threads=1,
                         inter_op_threads=1)

    class CountingRepository(ModelRepository):
        loads: list = []

        def load(self, config, max_batch_size, version=None):
            self.loads.append(version)
            return super().load(config, max_batch_size, version)

    repository = CountingRepository(settings)
    client, _, registry = server(repository, settings)
    (repo_dir / "digits" / "2").mkdir()
    (repo_dir / "digits" / "2" / "model.npz").write_bytes(b"not an npz file")
    first, second = _load(client, "digits"), _load(client, "digits")
    assert first.status_code == 500 and "failed 2" in first.json()["error"], first.text
    assert second.status_code == 500 and "not retried" in second.json()["error"], second.text
    assert repository.loads.count(2) == 1
    assert registry.get_sample_value("tpserve_model_load_failures_total", {"model": "digits"}) == 1
    shutil.copy(next((REPO / "digits" / "1").glob("*.npz")), repo_dir / "digits" / "2" / "model.npz")
    third = _load(client, "digits")
    assert third.status_code == 200 and third.json()["result"] == "loaded 2", third.text
    assert repository.loads.count(2) == 2
    assert client.get("/v2/models/digits").json()["versions"] == ["2"]


def test_removing_versions_rolls_back_and_clears_their_errors(server):
    v1, v2 = scaler(factor=1.0, version="1"), scaler(factor=2.0, version="2")
    repo = VersionedRepository("scale", {1: v1, 2: v2})
    client, _, _ = server(repo, _settings())
    assert client.post("/predict", json={"inputs": [[1, 1, 1]]}).json()["version"] == "2"
    del repo.models[2]                                  # the operator removes the served version
    assert _load(client).json()["result"] == "loaded 1"
    r = client.post("/predict", json={"inputs": [[1, 1, 1]]}).json()
    assert r["version"] == "1" and r["outputs"]["y"] == [[1, 1, 1]]
    repo.models[3] = None                               # a corrupt version 3: tried once per change
    assert _load(client).status_code == 500 and _load(client).status_code == 500
    assert repo.loads.count(3) == 1
    assert "version 3 failed" in client.get("/models").json()[0]["error"]
    repo.touch(3)                                       # its files changed: tried again
    assert _load(client).status_code == 500 and repo.loads.count(3) == 2
    del repo.models[3]                                  # removed: its error goes with it
    assert _load(client).json()["result"] == "serving 1"
    status = client.get("/models").json()[0]
    assert status["version"] == "1" and status["state"] == "READY" and status.get("error") is None, status


# ----------------------------------------------------------------------------- shutdown
def test_shutdown_has_one_deadline_for_every_model_and_reports_abandoned_batches(monkeypatch):
    """Two models hang; the lifespan's shutdown stops both batchers at once with the same deadline,
    shutdown_timeout_s after it began, and reports both running batches as abandoned."""
    a, b = HeldModel(doubler("a")), HeldModel(doubler("b"))
    events = []
    stop = DynamicBatcher.stop

    async def spy(self, *args, **kw):
        events.append(("stop", self.name, kw.get("deadline")))
        n = await stop(self, *args, **kw)
        events.append(("stopped", self.name, n, {"a": a, "b": b}[self.name].finished.is_set()))
        return n

    monkeypatch.setattr(DynamicBatcher, "stop", spy)
    registry = CollectorRegistry()
    settings = _settings(shutdown_timeout_s=0.2)
    app = create_app(settings, registry=registry, repository=FakeRepository([a, b]))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            async with app.router.lifespan_context(app):
                await app.state.loading
                requests = [asyncio.create_task(c.post("/predict", json={"model": m, "inputs": [[1, 2, 3]]}))
                            for m in ("a", "b")]
                for m in (a, b):
                    assert await asyncio.to_thread(m.entered.wait, PATIENCE_S)
                began = asyncio.get_running_loop().time()
            return began, await asyncio.gather(*requests)

    began, responses = asyncio.run(scenario())
    starts = [e for e in events if e[0] == "stop"]
    assert [e[0] for e in events[:2]] == ["stop", "stop"], events          # concurrent, not one after another
    assert starts[0][2] == starts[1][2] >= began + settings.shutdown_timeout_s
    assert sorted(e[1:] for e in events if e[0] == "stopped") == [("a", 1, False), ("b", 1, False)]
    report = app.state.manager.shutdown_report
    assert report["timeout_s"] == 0.2 and report["abandoned"] == {"a": 1, "b": 1}
    assert [r.status_code for r in responses] == [503, 503]
    assert all("shutdown deadline" in r.json()["error"] for r in responses)
    for m in ("a", "b"):
        assert registry.get_sample_value("tpserve_abandoned_batches_total", {"model": m}) == 1
    assert a.closed.wait(PATIENCE_S) and b.closed.wait(PATIENCE_S)


_HUNG_PROCESS = """
import asyncio, httpx
from prometheus_client import CollectorRegistry
from service import Settings, create_app
from tests.service.fakes import FakeRepository, HeldModel, doubler

class Hung(HeldModel):
    def close(self):                 # a model whose batch never returns, whatever happens
        self.closed.set()

model = Hung(doubler(), hold_s=3600)
app = create_app(Settings(shutdown_timeout_s=0.2, poll_interval_s=0), registry=CollectorRegistry(),
                 repository=FakeRepository([model]))

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        async with app.router.lifespan_context(app):
            await app.state.loading
            request = asyncio.create_task(c.post("/predict", json={"inputs": [[1, 2, 3]]}))
            await asyncio.to_thread(model.entered.wait, 60)
        print("answered", (await request).status_code, "report", app.state.manager.shutdown_report, flush=True)

asyncio.run(main())
print("exiting with the batch still running:", not model.finished.is_set(), flush=True)
"""


def test_a_process_with_a_hung_batch_exits_after_the_shutdown_deadline():
    """The batch thread never returns; the process still exits, normally, once shutdown gave up on it."""
    proc = subprocess.run([sys.executable, "-c", _HUNG_PROCESS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "answered 503 report {'timeout_s': 0.2, 'abandoned': {'double': 1}" in proc.stdout, proc.stdout
    assert "exiting with the batch still running: True" in proc.stdout
    assert "1 batch(es) still running" in proc.stderr


# ----------------------------------------------------------------------------- leaks
def _manager(repository, **kw):
    return ModelManager(_settings(**kw), Metrics(CollectorRegistry()), repository)


def test_stop_finishes_a_retiring_version_and_leaves_no_task_behind():
    v1, v2 = HeldModel(scaler(factor=1.0, version="1")), scaler(factor=2.0, version="2")
    repo = VersionedRepository("scale", {1: v1})
    manager = _manager(repo, shutdown_timeout_s=PATIENCE_S)   # the retire alone would wait this long

    async def scenario():
        await manager.start()
        entry = manager.entries["scale"]
        request = asyncio.create_task(infer(manager, entry, {"x": np.ones((1, 3), np.float32)}, None))
        assert await asyncio.to_thread(v1.entered.wait, PATIENCE_S)
        repo.models[2] = v2
        assert await manager.poll_once() == {"scale": "loaded 2"}     # version 1 is retiring, its batch hung
        await manager.stop(timeout_s=0.1)
        await asyncio.gather(request, return_exceptions=True)
        # (the abandoned batch's own task waits for its thread: that is what abandoning means)
        return [t.get_coro().__qualname__ for t in asyncio.all_tasks() if not t.done()
                and t.get_coro().__qualname__.startswith("ModelManager.")]

    assert asyncio.run(scenario()) == []        # no retire (or any manager) task left behind
    assert v1.closed.wait(PATIENCE_S)
    # the retiring version's hung batch is abandoned at the shutdown's deadline, and counted once
    assert manager.metrics.registry.get_sample_value("tpserve_abandoned_batches_total", {"model": "scale"}) == 1


class _GatedRepository(VersionedRepository):
    """load() of the versions in ``gated`` waits for ``go``; ``started`` is set when such a load begins."""

    def __init__(self, name, models, gated):
        super().__init__(name, models)
        self.gated, self.started, self.go = set(gated), threading.Event(), threading.Event()

    def load(self, config, max_batch_size, version=None):
        if (max(self.models) if version is None else version) in self.gated:
            self.started.set()
            self.go.wait(PATIENCE_S)
        return super().load(config, max_batch_size, version)


def test_stop_cancels_the_initial_load_and_closes_what_it_builds():
    model = HeldModel(doubler(), held=False)
    repo = _GatedRepository("double", {1: model}, gated={1})
    manager = _manager(repo)

    async def scenario():
        loading = asyncio.create_task(manager.start())
        assert await asyncio.to_thread(repo.started.wait, PATIENCE_S)
        await manager.stop()                 # returns while the load is still running in its thread
        repo.go.set()
        assert await asyncio.to_thread(model.closed.wait, PATIENCE_S)
        return loading.cancelled()

    assert asyncio.run(scenario())
    entry = manager.entries["double"]
    assert entry.state != "READY" and entry.model is None


def test_a_reload_finishing_after_stop_is_closed_not_swapped_in():
    v1, v2 = scaler(factor=1.0, version="1"), HeldModel(scaler(factor=2.0, version="2"), held=False)
    repo = _GatedRepository("scale", {1: v1}, gated={2})
    manager = _manager(repo)

    async def scenario():
        await manager.start()
        repo.models[2] = v2
        poll = asyncio.create_task(manager.poll_once())
        assert await asyncio.to_thread(repo.started.wait, PATIENCE_S)
        await manager.stop()
        repo.go.set()
        return await poll

    assert asyncio.run(scenario()) == {"scale": "not loaded 2: the server is shutting down"}
    assert v2.closed.wait(PATIENCE_S)
    assert manager.entries["scale"].version == "1"


def test_batcher_stop_reports_the_batches_it_abandons():
    entered, gate = threading.Event(), threading.Event()

    def hung(replica, inputs):
        entered.set()
        gate.wait(PATIENCE_S)
        return {"y": inputs["x"]}

    async def scenario():
        b = DynamicBatcher(hung, name="hung")
        await b.start()
        running = asyncio.create_task(b.submit({"x": np.ones((1, 3))}))
        assert await asyncio.to_thread(entered.wait, PATIENCE_S)
        queued = asyncio.create_task(b.submit({"x": np.ones((1, 3))}))
        await asyncio.sleep(0)                      # let it queue (a scheduling step, not a delay)
        assert b.queued_rows == 1
        abandoned = await b.stop(timeout_s=0.05)
        return abandoned, await asyncio.gather(running, queued, return_exceptions=True)

    abandoned, (running, queued) = asyncio.run(scenario())
    gate.set()
    assert abandoned == 1
    assert isinstance(running, ShuttingDown) and "still running" in str(running)
    assert isinstance(queued, ShuttingDown) and "before this request ran" in str(queued)


def test_a_model_whose_first_batch_fails_closes_its_predictor(monkeypatch):
    import layers
    from service.repository import TFModel

    closed = []

    class BrokenPredictor:
        def __init__(self, config, devices):
            self.replicas = [self._run]

        def _run(self, *arrays):
            raise RuntimeError("the first batch failed (injected)")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(layers, "MultiDevicePredictor", BrokenPredictor)
    weights = next((REPO / "digits" / "1").glob("*.npz"))
    with pytest.raises(RuntimeError, match="injected"):
        TFModel(ModelConfig("digits", "mnist-convnet"), "1", str(weights), Settings(device="cpu"))
    assert closed == [True]


# ----------------------------------------------------------------------------- health, settings, rejections
def test_healthz_and_v2_live_give_the_same_answer(server):
    model = HeldModel(doubler())
    client, _, _ = server(FakeRepository([model]), _settings(liveness_stuck_batch_s=1e-6))
    assert client.get("/healthz").status_code == 200 and client.get("/v2/health/live").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(client.post, "/predict", json={"inputs": [[1, 2, 3]]})
        assert model.entered.wait(PATIENCE_S)
        wait_until(lambda: client.get("/healthz").status_code == 503, "/healthz reports the hung batch")
        live = client.get("/v2/health/live")
        assert live.status_code == 503 and live.json()["live"] is False
        assert "has had a batch running" in live.json()["reason"]
        model.release()
        assert request.result().status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/v2/health/live").json() == {"live": True}


def test_load_threads_is_not_a_setting():
    """TensorFlow fixes a session's thread pools when it is created, so a reload's warm-up cannot run
    with fewer threads than the session then serves with: the setting that claimed to is gone."""
    with pytest.raises(ValidationError, match="load_threads"):
        Settings(load_threads=1)
    for doc in (ROOT / "README.md", ROOT / "deploy" / "README.md"):
        assert "LOAD_THREADS" not in doc.read_text()


def test_requests_to_a_model_that_is_not_ready_are_counted_as_not_ready(server):
    client, _, registry = server(FakeRepository([doubler()], fail_load=["broken"]), _settings())
    assert client.post("/predict", json={"model": "broken", "inputs": [[1, 2, 3]]}).status_code == 503
    assert client.post("/v2/models/broken/infer", json=_v2([[1, 2, 3]])).status_code == 503
    assert registry.get_sample_value("tpserve_rejected_total", {"model": "broken", "reason": "not_ready"}) == 2


def test_top_k_and_output_are_checked_before_the_model_runs(server):
    double, pix = doubler(), pixels()
    client, _, _ = server(FakeRepository([double, pix]), _settings())
    image = [[[0, 0], [0, 0]]]
    for top_k in (0, "3", True):
        r = client.post("/v1/models/pixels:classify", json={"instances": image, "top_k": top_k})
        assert r.status_code == 400 and r.json()["field"] == "top_k", r.text
    r = client.post("/predict?model=pixels&top_k=0", content=_png([9, 9]), headers={"content-type": "image/png"})
    assert r.status_code == 400 and r.json()["field"] == "top_k", r.text
    r = client.post("/predict?model=double&output=nope", content=_npy([[1, 2, 3]]),
                    headers={"content-type": "application/x-npy"})
    assert r.status_code == 400 and r.json()["field"] == "output" and r.json()["received"] == ["nope"], r.text
    assert pix.batch_sizes == [] and double.batch_sizes == []
    assert client.post("/v1/models/pixels:classify", json={"instances": image, "top_k": 1}).status_code == 200
    assert pix.batch_sizes == [1]

"""The multi-process server: engine <-> front end over a Unix socket and shared memory.

Two levels:
* the engine and a front end in this process (each on its own thread and event loop, talking over
  a real Unix socket and real shared memory), with fake models, so that events can be ordered on
  the model (a batch held inside ``run_batch``): 429s, cancellation, a vanished engine;
* ``python -m service --workers 2`` on the bundled digits model: answers equal to the in-process
  predictor, one aggregated ``/metrics``, a killed front end restarted, a killed engine taking the
  server down with a non-zero status.
"""
from __future__ import annotations

import asyncio
import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service import Settings, create_app
from service.batcher import QueueFull, RequestTooLarge, ShuttingDown
from service.engine import Engine, _Connection
from service.errors import InvalidRequest, UnknownModel
from service.ipc import decode_error, encode_error
from service.manager import ModelManager
from service.metrics import Metrics
from service.model import TensorSpec
from service.remote import RemoteManager
from service.shm import Arena, Segment, shm_dir

from .fakes import PATIENCE_S, FakeModel, FakeRepository, HeldModel, doubler, wait_until
from .realmodel import REPO, ROOT, heldout, reference_outputs
from .server import serve

# ----------------------------------------------------------------------------- units


def test_arena_never_hands_out_overlapping_regions_and_reclaims_everything():
    """Random allocations and out-of-order frees against a reference: live regions never overlap, stay
    inside the arena, and once everything is freed the whole arena is available again."""
    seg = Segment.create("tpserve-test", 64 * 1024)
    try:
        arena = Arena(seg)
        rng = random.Random(7)
        live: dict[int, int] = {}
        refused = 0
        for _ in range(5000):
            if live and rng.random() < 0.5:
                off = rng.choice(list(live))
                arena.free(off)
                del live[off]
                continue
            n = rng.choice([1, 64, 100, 1000, 5000, 20000])
            off = arena.alloc(n)
            if off is None:
                refused += 1
                continue
            assert 0 <= off and off + n <= arena.size
            for o, size in live.items():
                assert off + n <= o or o + size <= off, f"region {off}+{n} overlaps {o}+{size}"
            live[off] = n
        for off in list(live):
            arena.free(off)
        assert arena.used == 0
        assert arena.alloc(arena.size) == 0        # the whole arena again
        assert refused > 0                          # the run did fill it up
    finally:
        seg.close()
        seg.unlink()


def test_segment_creation_reserves_its_memory_and_names_the_fix_when_it_cannot(tmp_path):
    seg = Segment.create("tpserve-test", 1000)
    try:
        assert seg.size == 1024 and os.path.getsize(os.path.join(shm_dir(), seg.name)) == 1024
        other = Segment.attach(seg.name)
        seg.buf[:4] = b"abcd"
        assert bytes(other.buf[:4]) == b"abcd"
        other.close()
    finally:
        seg.close()
        seg.unlink()
    assert not os.path.exists(os.path.join(shm_dir(), seg.name))
    with pytest.raises(ValueError, match="bad shared-memory segment name"):
        Segment.attach("../etc/passwd")


def test_errors_cross_the_process_boundary_as_the_same_class_with_their_details():
    queue_full = decode_error(encode_error(QueueFull(300, 256, 3.2)))
    assert type(queue_full) is QueueFull and queue_full.retry_after_s == 3.2 and "300 rows waiting" in str(queue_full)
    too_large = decode_error(encode_error(RequestTooLarge(5000, 2048)))
    assert (type(too_large), too_large.rows, too_large.limit) == (RequestTooLarge, 5000, 2048)
    unknown = decode_error(encode_error(UnknownModel("no such model", field="model", expected=["a"], received="b")))
    assert type(unknown) is UnknownModel and unknown.status == 404
    assert unknown.body() == {"error": "no such model", "field": "model", "expected": ["a"], "received": "b"}
    bad = decode_error(encode_error(InvalidRequest("row 3: value 9 outside [0, 1]", field="x")))
    assert type(bad) is InvalidRequest and bad.status == 400 and bad.field == "x"
    bug = decode_error(encode_error(KeyError("oops")))
    assert bug.status == 500 and "KeyError" in bug.message


def test_a_request_cancelled_before_the_engine_task_starts_is_still_answered():
    """The front end frees a request's shared memory only when the engine answers it. A cancel ("x") read
    together with its request ("i") cancels the engine's task before its first step, so Engine.infer never
    runs: the engine must answer anyway (else the arena region leaks for good, and once the arena is full
    every request pays for a one-off segment)."""
    sent = []

    async def main():
        conn = _Connection(Engine(Settings(), manager=None))
        conn.send = sent.append
        conn._on_message({"t": "i", "id": 7, "m": "double", "v": None, "d": None, "in": []})
        task = conn.tasks[7]
        conn._on_message({"t": "x", "id": 7})
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)          # the task's done-callbacks
        assert conn.tasks == {}

    asyncio.run(main())
    assert [m["id"] for m in sent] == [7]
    assert isinstance(decode_error(sent[0]["err"]), ShuttingDown)


def test_tensor_spec_survives_the_wire():
    spec = TensorSpec("image", np.dtype("uint8"), (None, 28, 3), (0.0, 255.0), "an image")
    assert TensorSpec.from_wire(spec.to_wire()) == spec
    assert spec.static_nbytes(2) is None
    assert TensorSpec("x", np.dtype("float32"), (3, 4)).static_nbytes(5) == 5 * 12 * 4


# ----------------------------------------------------------------------------- engine + front end in-process


class EngineThread:
    """The engine (:class:`service.engine.Engine` over a fake repository) on its own thread and loop."""

    def __init__(self, settings, repository, socket_path):
        self.manager = ModelManager(settings, Metrics(CollectorRegistry()), repository)
        self.engine = Engine(settings, self.manager)
        self.socket_path = socket_path
        self.thread = threading.Thread(target=lambda: asyncio.run(self.engine.run(socket_path)), daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: os.path.exists(self.socket_path), "the engine's socket")
        return self

    def __exit__(self, *exc):
        if self.thread.is_alive():
            self.engine.stop_soon()
            self.thread.join(PATIENCE_S)


@pytest.fixture
def split(tmp_path):
    """make(models, settings=None, arena_bytes=...) -> (http client, engine thread, remote manager)."""
    stack = []

    def make(models, settings=None, arena_bytes=1 << 20):
        settings = settings or Settings()
        engine = EngineThread(settings, FakeRepository(models), str(tmp_path / f"engine{len(stack)}.sock"))
        stack.append(engine.__enter__())
        metrics = Metrics(CollectorRegistry())
        manager = RemoteManager(settings, metrics, engine.socket_path, arena_bytes, on_engine_lost=lambda: None)
        cm = serve(create_app(settings, manager=manager, metrics=metrics))
        srv = cm.__enter__()
        stack.append(cm)
        client = httpx.Client(base_url=srv.url, timeout=PATIENCE_S)
        stack.append(client)
        wait_until(lambda: client.get("/readyz").status_code == 200, "the front end to be ready")
        return client, engine, manager

    yield make
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


def test_answers_through_the_engine_equal_numpy_and_the_front_end_mirrors_its_models(split):
    client, engine, manager = split([doubler()])
    x = np.array([[1.5, -2.0, 3.25], [0.0, 7.0, -1.0]], np.float32)
    r = client.post("/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["outputs"]["y"], np.float32), x * 2)
    assert np.array_equal(np.array(r.json()["outputs"]["sum"], np.float32), x.sum(axis=1))
    v2 = client.post("/v2/models/double/infer", json={"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    y = next(o for o in v2.json()["outputs"] if o["name"] == "y")
    assert np.array_equal(np.array(y["data"], np.float32).reshape(2, 3), x * 2)
    models = client.get("/models").json()
    keys = ("name", "state", "version", "inputs", "outputs", "labels", "devices", "batching")
    assert [{k: m[k] for k in keys} for m in models] == \
        [{k: e.status()[k] for k in keys} for e in engine.manager.entries.values()]
    assert models[0]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3]}]
    assert manager.client.arena.used == 0          # every region was freed with its answer


def test_a_request_larger_than_the_arena_goes_through_a_one_off_segment_that_is_removed(split):
    big = FakeModel("big", [TensorSpec("x", np.dtype("float32"), (64, 64))], lambda d: {"y": d["x"] + 1.0})
    client, _, manager = split([big], arena_bytes=1 << 20)
    x = np.random.default_rng(0).standard_normal((100, 64, 64)).astype(np.float32)   # 1.6 MB > 1 MiB
    assert x.nbytes > manager.client.arena.size
    before = {n for n in os.listdir(shm_dir()) if n.startswith(("tpserve-in", "tpserve-out"))}
    buf = io.BytesIO()
    np.save(buf, x)
    r = client.post("/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["outputs"]["y"], np.float32), x + 1.0)
    after = {n for n in os.listdir(shm_dir()) if n.startswith(("tpserve-in", "tpserve-out"))}
    assert after <= before, f"segments left behind: {after - before}"
    assert manager.client.arena.used == 0


def test_the_declared_range_is_checked_in_the_front_end_unless_the_model_config_turns_it_off(tmp_path):
    from .fakes import scaler

    settings = Settings()
    strict, loose = scaler("strict"), scaler("loose")
    for m in (strict, loose):
        m.inputs = [TensorSpec("x", np.dtype("float32"), (3,), (0.0, 1.0))]
    with EngineThread(settings, FakeRepository([strict, loose], unchecked_ranges={"loose"}),
                      str(tmp_path / "e.sock")) as engine:
        metrics = Metrics(CollectorRegistry())
        manager = RemoteManager(settings, metrics, engine.socket_path, 1 << 20, on_engine_lost=lambda: None)
        with serve(create_app(settings, manager=manager, metrics=metrics)) as srv, \
                httpx.Client(base_url=srv.url, timeout=PATIENCE_S) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, "the front end to be ready")
            r = client.post("/predict", json={"model": "strict", "inputs": [[0.5, 0.5, 0.5], [5.0, 0.5, -2.0]]})
            assert r.status_code == 400 and r.json()["received"] == {"row": 1, "value": 5.0}, r.text
            r = client.post("/predict", json={"model": "loose", "inputs": [[5.0, 0.5, -2.0]]})
            assert r.status_code == 200, r.text
            assert r.json()["outputs"]["y"] == [[5.0, 0.5, -2.0]]


def test_a_hot_reload_in_the_engine_reaches_the_front_end(tmp_path):
    """A new version directory, loaded through the front end's repository API (a call to the engine's
    manager): the front end's /models and answers follow, and a pin to the old version is a 404."""
    from .fakes import VersionedRepository, scaler

    settings = Settings(poll_interval_s=0)
    repo = VersionedRepository("scale", {1: scaler(factor=1.0, version="1")})
    with EngineThread(settings, repo, str(tmp_path / "e.sock")) as engine:
        metrics = Metrics(CollectorRegistry())
        manager = RemoteManager(settings, metrics, engine.socket_path, 1 << 20, on_engine_lost=lambda: None)
        with serve(create_app(settings, manager=manager, metrics=metrics)) as srv, \
                httpx.Client(base_url=srv.url, timeout=PATIENCE_S) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, "the front end to be ready")
            row = {"inputs": [[1.0, 2.0, 3.0]]}
            assert client.post("/predict", json=row).json()["version"] == "1"
            repo.models[2] = scaler(factor=3.0, version="2")
            r = client.post("/v2/repository/models/scale/load")
            assert r.status_code == 200, r.text
            wait_until(lambda: client.get("/models").json()[0]["version"] == "2", "the front end to mirror v2")
            r = client.post("/predict", json=row)
            assert (r.json()["version"], r.json()["outputs"]["y"]) == ("2", [[3.0, 6.0, 9.0]])
            r = client.post("/predict?version=1", json=row)
            assert r.status_code == 404 and "not loaded" in r.json()["error"], r.text


def test_a_deadline_crosses_to_the_engine(split):
    """X-Request-Timeout-Ms is an absolute deadline in both processes (one monotonic clock): a request
    queued behind a held batch past its deadline is answered 504 and never computed."""
    held = HeldModel(doubler())
    client, engine, _ = split([held], Settings(batching={"max_batch_size": 1}))
    first = []
    t = threading.Thread(target=lambda: first.append(client.post("/predict", json={"inputs": [[1, 2, 3]]})))
    t.start()
    assert held.entered.wait(PATIENCE_S)
    r = client.post("/predict", json={"inputs": [[7, 7, 7]]}, headers={"x-request-timeout-ms": "50"})
    assert r.status_code == 504, r.text
    held.release()
    t.join(PATIENCE_S)
    assert first[0].status_code == 200
    assert all(not (seen == 7).any() for seen in held._model.seen)


def test_a_full_shared_memory_filesystem_is_a_503_naming_the_fix(split, monkeypatch):
    import errno

    big = FakeModel("big", [TensorSpec("x", np.dtype("float32"), (64, 64))], lambda d: {"y": d["x"] + 1.0})
    client, _, _ = split([big], arena_bytes=1 << 20)

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("service.shm.os.posix_fallocate", full)
    buf = io.BytesIO()
    np.save(buf, np.zeros((100, 64, 64), np.float32))      # 1.6 MB: past the arena, needs a new segment
    r = client.post("/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 503, r.text
    assert "shared memory" in r.json()["error"] and "shm" in r.json()["error"]


def test_a_full_queue_in_the_engine_is_a_429_with_retry_after_at_the_front_end(split):
    held = HeldModel(doubler())
    settings = Settings(batching={"max_batch_size": 1, "max_queue_size": 2})
    client, engine, _ = split([held], settings)
    row = {"inputs": [[1.0, 2.0, 3.0]]}
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(client.post("/predict", json=row)))]
    threads[0].start()
    assert held.entered.wait(PATIENCE_S)          # the first request's batch is running (held)
    for _ in range(2):
        t = threading.Thread(target=lambda: answers.append(client.post("/predict", json=row)))
        t.start()
        threads.append(t)
    batcher = engine.manager.entries["double"].batcher
    wait_until(lambda: batcher.queued_rows == 2, "two rows queued in the engine")
    r = client.post("/predict", json=row)
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1 and "queue full" in r.json()["error"]
    held.release()
    for t in threads:
        t.join(PATIENCE_S)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json()["outputs"]["y"] == [[2.0, 4.0, 6.0]] for a in answers)


def test_a_cancelled_request_keeps_its_shared_memory_until_its_batch_is_over(split):
    """The client of a running request goes away: the front end must not reuse that request's memory
    while the engine's batch may still read it; a queued one is dropped without running."""
    held = HeldModel(doubler())
    client, engine, manager = split([held], Settings(batching={"max_batch_size": 1}))
    model = held._model
    arena = manager.client.arena

    async def scenario():
        entry = manager.entries["double"]
        running = asyncio.create_task(manager.infer(entry, {"x": np.ones((1, 3), np.float32)}, None))
        await asyncio.get_running_loop().run_in_executor(None, held.entered.wait, PATIENCE_S)
        queued = asyncio.create_task(manager.infer(entry, {"x": np.full((1, 3), 5, np.float32)}, None))
        batcher = engine.manager.entries["double"].batcher
        while batcher.queued_rows != 1:
            await asyncio.sleep(0.01)
        one_request = arena.used // 2
        running.cancel()
        queued.cancel()
        # the queued one is answered (dropped) at once and its memory freed; the running one is not
        while arena.used != one_request:
            await asyncio.sleep(0.01)
        assert manager.client._pending, "the running request's answer must still be awaited"
        held.release()
        while arena.used or manager.client._pending:
            await asyncio.sleep(0.01)

    # the front end's loop owns the connection: run the scenario there
    fut = asyncio.run_coroutine_threadsafe(scenario(), manager.client.loop)
    fut.result(PATIENCE_S)
    assert all(not (seen == 5).any() for seen in model.seen), "the dropped request was computed"


def test_when_the_engine_goes_away_waiting_requests_get_503_and_readiness_fails(split):
    held = HeldModel(doubler())
    client, engine, _ = split([held])
    answers = []
    t = threading.Thread(target=lambda: answers.append(client.post("/predict", json={"inputs": [[1, 2, 3]]})))
    t.start()
    assert held.entered.wait(PATIENCE_S)
    engine.engine._loop.call_soon_threadsafe(lambda: [c.transport.abort() for c in list(engine.engine.connections)])
    t.join(PATIENCE_S)
    assert answers[0].status_code == 503, answers[0].text
    assert "engine" in answers[0].json()["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "engine" in ready.text
    assert client.get("/healthz").status_code == 503
    held.release()


# ----------------------------------------------------------------------------- python -m service --workers 2


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m service`` on the bundled model, its log in a file the test reads."""

    def __init__(self, tmp_path, *args, env=None, repo=REPO):
        self.port = _free_port()
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(self.port), "--model-repository",
                                      str(repo), "--workers", "2", *args], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def pids(self) -> tuple[int, list[int]]:
        m = wait_until(lambda: re.search(r"engine pid (\d+), \d+ front end\(s\) \[([\d, ]+)\]", self.log()),
                       "the supervisor's start-up line")
        return int(m.group(1)), [int(p) for p in m.group(2).split(",")]

    def wait_ready(self):
        def ready():
            assert self.proc.poll() is None, self.log()
            try:
                return httpx.get(self.url + "/readyz", timeout=PATIENCE_S).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, "the server to be ready", timeout_s=300, poll_s=0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(PATIENCE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _counter(text: str, name: str, **labels) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture(scope="module")
def two_front_ends(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mp"), "--grpc-port", str(_free_port()))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_two_front_ends_answer_like_the_predictor_and_share_one_metrics_view(two_front_ends):
    srv = two_front_ends
    x, _ = heldout()
    ref = reference_outputs(x[:8])
    before = httpx.get(srv.url + "/metrics").text
    n = 24
    for i in range(n):           # a new connection each time: the kernel spreads them over the front ends
        r = httpx.post(srv.url + "/predict", json={"inputs": x[i % 8:i % 8 + 1].tolist()}, timeout=PATIENCE_S)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["outputs"]["prob"]), ref["prob"][i % 8:i % 8 + 1], atol=1e-5)
    after = httpx.get(srv.url + "/metrics").text
    served = _counter(after, "tpserve_requests_total", route="predict", code="200") - \
        _counter(before, "tpserve_requests_total", route="predict", code="200")
    assert served == n
    rows = _counter(after, "tpserve_batch_size_sum", model="digits") - _counter(before, "tpserve_batch_size_sum",
                                                                                model="digits")
    assert rows == n                              # counted by the engine process
    assert _counter(after, "tpserve_model_info", model="digits", version="1", state="READY") == 1


def test_an_uploaded_png_is_decoded_by_a_front_end_and_preprocessed_by_the_engine(two_front_ends):
    from PIL import Image

    x, _ = heldout()
    img = (x[3] * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).convert("RGB").save(buf, format="PNG")
    r = httpx.post(two_front_ends.url + "/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    ref = reference_outputs((img.astype(np.float32) / 255.0)[None])["prob"][0]
    top = r.json()["top_k"]
    assert top[0]["label"] == str(int(np.argmax(ref)))
    assert top[0]["score"] == pytest.approx(float(ref.max()), rel=1e-3)
    r = httpx.post(two_front_ends.url + "/v1/models/digits:classify",
                   files={"image": ("d.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200 and r.json()["results"][0][0][0] == top[0]["label"], r.text


def test_tf_serving_b64_images_of_different_sizes_are_preprocessed_by_the_engine(two_front_ends):
    import base64

    from PIL import Image

    x, _ = heldout()
    bodies, refs = [], []
    for i, side in ((3, 28), (5, 56)):
        img = Image.fromarray((x[i] * 255).round().astype(np.uint8)).resize((side, side), Image.NEAREST)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        bodies.append({"b64": base64.b64encode(buf.getvalue()).decode()})
        refs.append(np.array(img, np.float32) / 255.0)
    r = httpx.post(two_front_ends.url + "/v1/models/digits:predict", json={"instances": bodies}, timeout=PATIENCE_S)
    assert r.status_code == 200, r.text
    got = np.array([p["prob"] for p in r.json()["predictions"]])
    from model_zoo import get

    zoo = get("mnist-convnet")
    ref = reference_outputs(np.stack([zoo.preprocess_image(np.asarray(Image.fromarray(
        (im * 255).round().astype(np.uint8)).convert("RGB"))) for im in refs]))["prob"]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_grpc_is_served_by_the_front_ends_like_http(two_front_ends):
    import tritonclient.grpc as grpcclient

    srv = two_front_ends
    port = int(re.search(r"--grpc-port', '(\d+)", str(srv.proc.args)).group(1))
    x, _ = heldout()
    http = httpx.post(srv.url + "/predict", json={"inputs": x[:3].tolist()}).json()["outputs"]["prob"]
    for _ in range(3):          # new channels: the kernel spreads them over the front ends' shared port
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            assert client.is_server_ready()
            inp = grpcclient.InferInput("input", [3, 28, 28], "FP32")
            inp.set_data_from_numpy(x[:3].astype(np.float32))
            result = client.infer("digits", [inp], outputs=[grpcclient.InferRequestedOutput("prob")])
            np.testing.assert_allclose(result.as_numpy("prob"), np.array(http), atol=1e-6)
        finally:
            client.close()


def test_a_killed_front_end_is_restarted_and_its_counts_are_kept(two_front_ends):
    srv = two_front_ends
    _, frontends = srv.pids()
    x, _ = heldout()
    for _ in range(4):
        assert httpx.post(srv.url + "/predict", json={"inputs": x[:1].tolist()}).status_code == 200
    before = _counter(httpx.get(srv.url + "/metrics").text, "tpserve_requests_total", route="predict")
    t_kill = time.monotonic()
    os.kill(frontends[0], signal.SIGKILL)
    wait_until(lambda: "front end 0 restarted" in srv.log(), "the supervisor to restart the front end")
    print(f"\nfront end killed -> restarted logged after {time.monotonic() - t_kill:.3f} s (test clock)")
    for _ in range(4):   # whichever front end answers, the server serves
        assert httpx.get(srv.url + "/healthz").status_code == 200
        assert httpx.post(srv.url + "/predict", json={"inputs": x[:1].tolist()}).status_code == 200
    after = _counter(httpx.get(srv.url + "/metrics").text, "tpserve_requests_total", route="predict")
    assert after >= before + 4                    # the dead process's counts are still there
    assert "died (killed by SIGKILL)" in srv.log()


def test_a_killed_engine_stops_the_server_with_a_non_zero_status(tmp_path):
    srv = Server(tmp_path)
    try:
        srv.wait_ready()
        engine, frontends = srv.pids()
        os.kill(engine, signal.SIGKILL)
        code = srv.proc.wait(PATIENCE_S)
        assert code == 1, srv.log()
        assert "the engine process died (killed by SIGKILL)" in srv.log()
        left = [n for n in os.listdir(shm_dir()) if n.startswith("tpserve-")
                and any(f"-{pid}-" in n for pid in (engine, *frontends))]
        assert not left, left
        for pid in frontends:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        srv.stop()


def test_versions_labels_and_explicit_model_control_through_the_front_ends(tmp_path):
    """The real server (engine + 2 front ends, TensorFlow) with TPSERVE_MODEL_CONTROL=explicit and nothing
    loaded at start: a gRPC load answers once the front end mirrors it (an inference on the same channel
    right after it is served); two versions under ``latest: 2`` with a label, each answering like the
    in-process predictor and accounted in /models; a gRPC unload, after which the model is 404."""
    import json
    import shutil

    import tritonclient.grpc as grpcclient

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "digits", repo / "digits")
    config = json.loads((repo / "digits" / "config.json").read_text())
    config.update(version_policy={"latest": 2}, version_labels={"stable": 1})
    (repo / "digits" / "config.json").write_text(json.dumps(config))
    grpc_port = _free_port()
    srv = Server(tmp_path, "--grpc-port", str(grpc_port), repo=repo,
                 env={"TPSERVE_MODEL_CONTROL": "explicit", "TPSERVE_STARTUP_MODELS": ""})
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    x, _ = heldout()
    expected = reference_outputs(x[:2])["prob"]

    def grpc_prob(version=""):
        inp = grpcclient.InferInput("input", [2, 28, 28], "FP32")
        inp.set_data_from_numpy(x[:2].astype(np.float32))
        result = client.infer("digits", [inp], model_version=version)
        return result.get_response().model_version, result.as_numpy("prob")

    try:
        srv.wait_ready()          # nothing loaded in explicit mode is still ready
        r = httpx.post(srv.url + "/predict", json={"inputs": x[:2].tolist()})
        assert r.status_code == 404 and "/v2/repository/models/digits/load" in r.json()["error"], r.text
        client.load_model("digits")
        version, prob = grpc_prob("stable")
        assert version == "1"
        np.testing.assert_allclose(prob, expected, atol=1e-6)

        shutil.copytree(repo / "digits" / "1", repo / "digits" / "2")
        r = httpx.post(srv.url + "/v2/repository/models/digits/load", timeout=PATIENCE_S)
        assert r.status_code == 200 and r.json()["versions"] == ["1", "2"], r.text
        for label, want in (("", "2"), ("1", "1"), ("stable", "1"), ("2", "2")):
            version, prob = grpc_prob(label)
            assert version == want
            np.testing.assert_allclose(prob, expected, atol=1e-6)
        with np.load(next((repo / "digits" / "1").glob("*.npz"))) as weights:
            size = sum(weights[k].nbytes for k in weights.files)
        (m,) = wait_until(lambda: [m for m in httpx.get(srv.url + "/models").json() if len(m["versions"]) == 2],
                          "every front end to mirror both versions")
        assert [(v["version"], v["memory"]["variables_bytes"]) for v in m["versions"]] == [("1", size), ("2", size)]
        r = httpx.post(srv.url + "/v1/models/digits/labels/stable:predict", json={"instances": x[:2].tolist()})
        np.testing.assert_allclose(np.array([row["prob"] for row in r.json()["predictions"]]), expected, atol=1e-6)

        client.unload_model("digits")
        from tritonclient.utils import InferenceServerException

        e = pytest.raises(InferenceServerException, grpc_prob)
        assert e.value.status() == "StatusCode.NOT_FOUND" and "not loaded" in e.value.message()
        index = client.get_model_repository_index(as_json=True)["models"]
        assert index == [{"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded through the repository API"}]
    finally:
        client.close()
        srv.stop()

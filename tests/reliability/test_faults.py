"""Faults inside models (fake models, in-thread server): failing batches, a hung model, a slow model,
a model returning the wrong number of rows, a model that failed to load. The service stays up, every
request gets exactly one answer, healthy models keep serving, and readiness says when a model can no
longer serve:

* ``unhealthy_after_failed_batches`` consecutive failed batches, or
* a batch running longer than ``stuck_batch_timeout_s`` (then, while every slot is stuck, requests to
  that model get 503 at once instead of waiting for their deadline),

mark it UNAVAILABLE: ``/readyz`` and ``/v2/models/{name}/ready`` answer 503, ``/models`` shows the state;
it recovers on its own when a batch succeeds again / the stuck batch ends.

Hung and slow batches are held inside the fake model (a ``HANG`` row) until the test releases them, and
each step waits for the event it depends on (``EchoModel.entered``, a queue gauge, readiness), so no
assertion depends on how fast the machine is.
"""
from __future__ import annotations

import asyncio
import random
import threading

import httpx
import numpy as np
import orjson

from bench.loadgen import Request, closed_loop
from service import Settings
from tests.service.fakes import PATIENCE_S, wait_until

from .conftest import report
from .models import BADROWS, FAIL, HANG, EchoModel


def rows_for(rid: int, n: int, ctrl: float = 1.0) -> list[list[float]]:
    """``n`` rows ``[rid, row index, ctrl]``: the answer's rows can be matched to the request."""
    return [[float(rid), float(j), ctrl] for j in range(n)]


def check_rows(rid: int, n: int, body: bytes, ctrl: float = 1.0):
    y = np.asarray(orjson.loads(body)["outputs"]["y"], np.float32)
    np.testing.assert_array_equal(y, 2 * np.asarray(rows_for(rid, n, ctrl), np.float32))


def test_failing_batches_fail_exactly_their_requests(thread_server, request):
    model = EchoModel("flaky", fail_every=4, compute_s=0.002)
    srv = thread_server([model], Settings(batching={"max_batch_size": 8}, unhealthy_after_failed_batches=5,
                                          poll_interval_s=0))
    rng = random.Random(7)
    plan = {}

    def make(rid):
        n = rng.randint(1, 4)
        ctrl = FAIL if rng.random() < 0.05 else 1.0
        plan[rid] = (n, ctrl)
        return Request("POST", "/predict", orjson.dumps({"inputs": rows_for(rid, n, ctrl)}))

    results = asyncio.run(closed_loop("127.0.0.1", srv.port, make, concurrency=8, duration_s=3.0, keep_body=True,
                                      max_requests=600, timeout_s=10))
    ids = [r.id for r in results]
    assert sorted(ids) == list(range(len(plan))), "every request sent got exactly one answer"
    by = {}
    for r in results:
        by[r.status] = by.get(r.status, 0) + 1
        n, ctrl = plan[r.id]
        assert r.error is None, r.error
        if r.status == 200:
            check_rows(r.id, n, r.body)
        else:
            assert r.status == 500, r.body
            assert b"injected failure" in r.body and b"inference failed for a batch" in r.body
        if ctrl == FAIL:
            assert r.status == 500
    report(request, requests=len(results), statuses=by, batches=model.batches, failed_batches=model.failed_batches)
    assert by.get(200, 0) > 0 and by.get(500, 0) > 0
    # fail_every=4 never makes 5 failures in a row: still ready
    assert httpx.get(srv.url + "/readyz").status_code == 200


def test_consecutive_failures_make_the_model_unavailable_until_a_batch_succeeds(thread_server, request):
    flaky, other = EchoModel("flaky"), EchoModel("other")
    srv = thread_server([flaky, other], Settings(unhealthy_after_failed_batches=3, poll_interval_s=0))
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        for i in range(3):
            assert c.get("/readyz").status_code == 200
            r = c.post("/predict", json={"model": "flaky", "inputs": rows_for(i, 1, FAIL)})
            assert r.status_code == 500 and "injected failure" in r.json()["error"]
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert any("flaky" in x and "UNAVAILABLE" in x and "3 consecutive batches failed" in x
                   for x in ready.json()["reasons"]), ready.json()
        assert c.get("/v2/models/flaky/ready").status_code == 503
        assert c.get("/v2/models/other/ready").status_code == 200
        assert c.get("/v2/health/ready").status_code == 503
        states = {m["name"]: m["state"] for m in c.get("/models").json()}
        assert states == {"flaky": "UNAVAILABLE", "other": "READY"}
        # the other model is unaffected, and the failing one still takes requests (so it can recover)
        assert c.post("/predict", json={"model": "other", "inputs": rows_for(9, 2)}).status_code == 200
        r = c.post("/predict", json={"model": "flaky", "inputs": rows_for(10, 2)})
        assert r.status_code == 200
        check_rows(10, 2, r.content)
        assert c.get("/readyz").status_code == 200
        assert c.get("/v2/models/flaky/ready").status_code == 200
    report(request, failures_before_unavailable=3, recovered=True)


def test_wrong_row_count_from_a_model_is_a_500_for_that_batch_only(thread_server):
    model = EchoModel("bad")
    srv = thread_server([model], Settings(poll_interval_s=0))
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.post("/predict", json={"inputs": rows_for(1, 3, BADROWS)})
        assert r.status_code == 500 and "model returned 2 rows" in r.json()["error"]
        r = c.post("/predict", json={"inputs": rows_for(2, 3)})
        assert r.status_code == 200
        check_rows(2, 3, r.content)


def serves(client, model: str, rid: int, n: int):
    """``model`` answers a request of ``n`` rows with 200 and exactly its own rows."""
    r = client.post("/predict", json={"model": model, "inputs": rows_for(rid, n)})
    assert r.status_code == 200, r.text
    check_rows(rid, n, r.content)


def _poster(srv):
    """``post(model, rows, timeout_ms) -> (status, text)`` over one keep-alive client, plus that client."""
    client = httpx.Client(base_url=srv.url, timeout=PATIENCE_S)

    def post(model, rows, timeout_ms):
        r = client.post("/predict", json={"model": model, "inputs": rows, "timeout_ms": timeout_ms})
        return r.status_code, r.text

    return post, client


def test_hung_model_gives_504_at_the_deadline_while_others_serve(thread_server, request):
    """Before the watchdog fires (it is set far beyond this test's length): the request in the hung batch
    and the one queued behind it get 504 at their deadlines while the batch is still hung, the queued one
    is never computed, liveness, readiness and the other model are unaffected; the model serves again
    once the batch ends."""
    hung, other = EchoModel("hung", hang_s=PATIENCE_S), EchoModel("other")
    srv = thread_server([hung, other], Settings(stuck_batch_timeout_s=3600, poll_interval_s=0,
                                                batching={"max_batch_size": 4}))
    post, client = _poster(srv)
    try:
        # the batch that hangs: dispatched at once (a free replica), it is answered at its deadline while
        # the model still holds it (nothing releases it before the asserts below)
        status, text = post("hung", rows_for(0, 1, HANG), 1000)
        assert status == 504 and "deadline" in text, text
        assert hung.entered.wait(PATIENCE_S) and not hung.released
        status, text = post("hung", rows_for(1, 1), 300)            # queued behind the hung batch
        assert status == 504 and "deadline" in text, text
        for i in range(20):                                        # the other model is unaffected
            serves(client, "other", 100 + i, 2)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/v2/models/hung/ready").status_code == 200
        assert not hung.released
        hung.release()
        serves(client, "hung", 4, 2)
        assert 1.0 not in hung.seen, "the request that expired in the queue was computed"
    finally:
        hung.release()
        client.close()
    report(request, deadline_rejections=srv.metric("tpserve_rejected_total", {"model": "hung", "reason": "deadline"}))


def test_stuck_batch_makes_the_model_unavailable_with_fast_503_and_it_recovers(thread_server, request):
    """Past the watchdog: readiness 503 naming the stuck model, requests to it get 503 "unavailable" without
    being queued (a 60 s deadline: a queued request would wait, not get 503) and are never computed; the
    other model serves; when the batch ends, readiness and serving come back."""
    hung, other = EchoModel("hung", hang_s=PATIENCE_S), EchoModel("other")
    srv = thread_server([hung, other], Settings(stuck_batch_timeout_s=0.2, poll_interval_s=0,
                                                batching={"max_batch_size": 4}))
    post, client = _poster(srv)
    try:
        held = threading.Thread(target=post, args=("hung", rows_for(0, 1, HANG), 60_000), daemon=True)
        held.start()
        assert hung.entered.wait(PATIENCE_S)
        wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to turn 503 for the stuck batch")
        ready = client.get("/readyz")
        assert any("hung" in x and "stuck" in x for x in ready.json()["reasons"]), ready.json()
        assert client.get("/v2/models/hung/ready").status_code == 503
        assert client.get("/v2/models/other/ready").status_code == 200
        status, text = post("hung", rows_for(2, 1), 60_000)
        assert status == 503 and "unavailable" in text, text
        assert srv.metric("tpserve_rejected_total", {"model": "hung", "reason": "unavailable"}) == 1
        serves(client, "other", 3, 1)
        hung.release()
        held.join(PATIENCE_S)
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness to recover after the batch ended")
        serves(client, "hung", 4, 2)
        assert 2.0 not in hung.seen, "the request refused as unavailable was computed"
    finally:
        hung.release()
        client.close()
    report(request, rejected_unavailable=srv.metric("tpserve_rejected_total",
                                                    {"model": "hung", "reason": "unavailable"}))


def test_a_long_batch_holds_only_its_own_model_and_requests_queue_behind_it(thread_server, request):
    """While one batch of "slow" is held inside the model: /healthz and the "fast" model answer; requests
    to "slow" queue behind it; those whose deadline passes in the queue get 504 and are never computed;
    the patient ones all run, batched together, in the next batch, each getting its own rows."""
    slow = EchoModel("slow", hang_s=PATIENCE_S)
    srv = thread_server([slow, EchoModel("fast")], Settings(batching={"max_batch_size": 8}, poll_interval_s=0))
    results, lock = {}, threading.Lock()

    def send(rid, timeout_ms, ctrl=1.0):
        with httpx.Client(base_url=srv.url, timeout=PATIENCE_S) as c:
            r = c.post("/predict", json={"model": "slow", "inputs": rows_for(rid, 1, ctrl), "timeout_ms": timeout_ms})
        with lock:
            results[rid] = (timeout_ms, r.status_code, r.content)

    def start(rid, timeout_ms, ctrl=1.0):
        t = threading.Thread(target=send, args=(rid, timeout_ms, ctrl), daemon=True)
        t.start()
        return t

    def queued_rows():
        return srv.metric("tpserve_queue_rows", {"model": "slow", "version": "1"})

    threads = [start(0, 60_000, HANG)]
    try:
        assert slow.entered.wait(PATIENCE_S)
        impatient = [start(rid, 100) for rid in (10, 11, 12)]
        for t in impatient:
            t.join(PATIENCE_S)
        patient = [start(rid, 60_000) for rid in range(20, 26)]
        threads += impatient + patient
        wait_until(lambda: queued_rows() == len(patient), "the patient requests to queue behind the held batch")
        with httpx.Client(base_url=srv.url, timeout=PATIENCE_S) as c:
            for i in range(10):
                assert c.get("/healthz").status_code == 200
                serves(c, "fast", i, 1)
        assert not slow.released and queued_rows() == len(patient)
    finally:
        slow.release()
        for t in threads:
            t.join(PATIENCE_S)
    assert sorted(results) == [0, 10, 11, 12, *range(20, 26)]
    for rid, (timeout_ms, status, body) in results.items():
        if timeout_ms == 100:
            assert status == 504, body
            assert float(rid) not in slow.seen
        else:
            assert status == 200, body
            check_rows(rid, 1, body, HANG if rid == 0 else 1.0)
    report(request, batches=slow.batches, batch_sizes=slow.batch_sizes)
    assert slow.batch_sizes == [1, len(patient)]    # the held batch, then everything that queued behind it


def test_a_model_that_failed_to_load_leaves_the_others_serving(thread_server):
    srv = thread_server([EchoModel("good")], Settings(poll_interval_s=0), broken=["bad"])
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and any("bad" in x and "FAILED" in x for x in ready.json()["reasons"])
        assert c.post("/predict", json={"model": "good", "inputs": rows_for(1, 1)}).status_code == 200
        r = c.post("/predict", json={"model": "bad", "inputs": rows_for(1, 1)})
        assert r.status_code == 503 and "FAILED" in r.json()["error"]
        assert c.get("/v2/models/bad").status_code == 503
        assert c.get("/v1/models/bad/metadata").status_code == 503

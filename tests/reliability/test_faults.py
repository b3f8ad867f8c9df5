"""Faults inside models (fake models, in-thread server): failing batches, a hung model, a slow model,
a model returning the wrong number of rows, a model that failed to load. The service stays up, every
request gets exactly one answer, healthy models keep serving, and readiness says when a model can no
longer serve:

* ``unhealthy_after_failed_batches`` consecutive failed batches, or
* a batch running longer than ``stuck_batch_timeout_s`` (then, while every slot is stuck, requests to
  that model get 503 at once instead of waiting for their deadline),

mark it UNAVAILABLE: ``/readyz`` and ``/v2/models/{name}/ready`` answer 503, ``/models`` shows the state;
it recovers on its own when a batch succeeds again / the stuck batch ends.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time

import httpx
import numpy as np
import orjson

from bench.loadgen import Request, closed_loop
from service import Settings

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


def test_hung_model_gives_504_then_503_while_others_serve_and_recovers(thread_server, request):
    hung, other = EchoModel("hung", hang_s=30), EchoModel("other")
    watchdog = 1.5
    srv = thread_server([hung, other], Settings(stuck_batch_timeout_s=watchdog, poll_interval_s=0,
                                                batching={"max_batch_size": 4}))
    answers = {}
    client = httpx.Client(base_url=srv.url, timeout=10)

    def post(key, model, rows, timeout_ms):
        t = time.monotonic()
        r = client.post("/predict", json={"model": model, "inputs": rows, "timeout_ms": timeout_ms})
        answers[key] = (r.status_code, time.monotonic() - t, r.text)

    try:
        t0 = time.monotonic()
        post("hang", "hung", rows_for(0, 1, HANG), 500)           # the batch that hangs
        status, secs, _ = answers["hang"]
        assert status == 504 and 0.4 < secs < 1.5
        # queued behind the hung batch, before the watchdog fires: 504 at the deadline
        post("queued", "hung", rows_for(1, 1), 300)
        assert answers["queued"][0] == 504
        # meanwhile: liveness and the other model are unaffected
        lat = []
        for i in range(20):
            t = time.monotonic()
            r = client.post("/predict", json={"model": "other", "inputs": rows_for(i, 2)})
            lat.append(time.monotonic() - t)
            assert r.status_code == 200
            check_rows(i, 2, r.content)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200 or time.monotonic() - t0 > watchdog
        # past the watchdog: readiness 503 with the reason, and requests to the hung model fail fast
        time.sleep(max(0.0, watchdog + 0.2 - (time.monotonic() - t0)))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert any("hung" in x and "stuck" in x for x in ready.json()["reasons"]), ready.json()
        assert client.get("/v2/models/hung/ready").status_code == 503
        post("fast-fail", "hung", rows_for(2, 1), 5000)
        status, secs, text = answers["fast-fail"]
        assert status == 503 and secs < 0.5 and "unavailable" in text
        assert client.post("/predict", json={"model": "other", "inputs": rows_for(3, 1)}).status_code == 200
        # the hung batch ends: the model serves again and readiness recovers
        hung.release()
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 200
        r = client.post("/predict", json={"model": "hung", "inputs": rows_for(4, 2)})
        assert r.status_code == 200
        check_rows(4, 2, r.content)
    finally:
        hung.release()
        client.close()
    report(request, hang_answer_s=round(answers["hang"][1], 3), fast_fail_s=round(answers["fast-fail"][1], 3),
           other_model_p_max_ms=round(1000 * max(lat), 1), rejected_unavailable=srv.metric(
               "tpserve_rejected_total", {"model": "hung", "reason": "unavailable"}))


def test_slow_model_serves_within_deadlines_and_the_server_stays_responsive(thread_server, request):
    slow = EchoModel("slow", compute_s=0.25)
    srv = thread_server([slow, EchoModel("fast")], Settings(batching={"max_batch_size": 8}, poll_interval_s=0))
    results, lock = [], threading.Lock()

    def client_thread(i):
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            for j in range(4):
                rid = i * 10 + j
                timeout_ms = 100 if j == 3 else 5000
                t = time.monotonic()
                r = c.post("/predict", json={"model": "slow", "inputs": rows_for(rid, 2), "timeout_ms": timeout_ms})
                with lock:
                    results.append((rid, timeout_ms, r.status_code, time.monotonic() - t, r.content))

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    probe = []
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        while any(t.is_alive() for t in threads) and len(probe) < 500:
            t0 = time.monotonic()
            assert c.get("/healthz").status_code == 200
            assert c.post("/predict", json={"model": "fast", "inputs": rows_for(1, 1)}).status_code == 200
            probe.append(time.monotonic() - t0)
            time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert len(results) == 24
    for rid, timeout_ms, status, secs, body in results:
        if timeout_ms == 5000:
            assert status == 200 and secs >= 0.25
            check_rows(rid, 2, body)
        else:
            assert status in (200, 504)
    report(request, slow_requests=len(results), statuses=sorted({r[2] for r in results}),
           batches=slow.batches, mean_batch=round(float(np.mean(slow.batch_sizes)), 2),
           probe_max_ms=round(1000 * max(probe), 1))
    assert any(r[2] == 504 for r in results)
    assert max(probe) < 0.5
    assert max(slow.batch_sizes) > 2        # requests waiting behind a slow batch were batched together


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

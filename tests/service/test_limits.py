"""Costs bounded before they are paid: requests that can never succeed are refused up front with 4xx."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service import Settings
from service.batcher import DynamicBatcher, QueueFull, RequestTooLarge

from .fakes import doubler
from .test_app import make_server  # noqa: F401  (the shared real-server fixture)


def test_batcher_refuses_more_rows_than_its_queue_can_ever_hold():
    calls = []

    def run(replica, inputs):
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    async def main():
        b = DynamicBatcher(run, max_batch_size=4, max_queue_rows=8, name="m")
        await b.start()
        try:
            with pytest.raises(RequestTooLarge, match=r"9 rows in one request.*at most 8 rows") as exc:
                await b.submit({"x": np.ones((9, 3), np.float32)})
            assert (exc.value.rows, exc.value.limit) == (9, 8)
            out = await b.submit({"x": np.ones((8, 3), np.float32)})   # exactly the capacity still fits
            np.testing.assert_array_equal(out["y"], np.full((8, 3), 2, np.float32))
        finally:
            await b.stop()

    asyncio.run(main())
    assert sum(calls) == 8                      # the refused request never ran
    assert not issubclass(RequestTooLarge, QueueFull)    # so nobody maps it to 429 + Retry-After


def test_a_request_larger_than_the_queue_is_413_not_429(make_server):  # noqa: F811
    settings = Settings(max_body_bytes=64 * 1024, batching={"max_batch_size": 4, "max_queue_size": 8})
    client, registry = make_server([doubler()], settings)
    r = client.post("/predict", json={"inputs": np.ones((9, 3)).tolist()})
    assert r.status_code == 413, r.text
    assert "Retry-After" not in r.headers
    assert "at most 8 rows" in r.json()["error"] and "split the request" in r.json()["error"]
    assert registry.get_sample_value("tpserve_rejected_total",
                                     {"model": "double", "reason": "too_large"}) == 1
    ok = client.post("/predict", json={"inputs": np.ones((8, 3)).tolist()})
    assert ok.status_code == 200
    np.testing.assert_array_equal(ok.json()["outputs"]["y"], np.full((8, 3), 2.0))


@pytest.mark.parametrize(("path", "head", "tail"), [
    ("/predict", b'{"inputs": [', b"[]]}"),
    ("/v1/models/double:predict", b'{"instances": [', b"[]]}"),
    ("/v2/models/double/infer", b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [', b"[]]}]}"),
])
def test_a_32_mb_body_of_empty_lists_is_413_before_it_is_parsed(make_server, path, head, tail):  # noqa: F811
    model = doubler()
    client, _ = make_server([model], Settings())                 # the default 32 MiB body limit
    body = head + b"[]," * ((Settings().max_body_bytes - 200) // 3) + tail
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert "JSON lists/objects" in r.json()["error"]
    assert ("'double'" if "double" in path else "any model served here") in r.json()["error"]
    assert model.batch_sizes == []                               # the model never ran
    assert client.post("/predict", json={"inputs": [[1, 2, 3]]}).json()["outputs"]["y"] == [[2, 4, 6]]
    assert model.batch_sizes == [1]


def test_rows_the_queue_could_never_hold_are_refused_before_the_body_is_parsed(make_server):  # noqa: F811
    model = doubler()
    settings = Settings(max_body_bytes=64 * 1024, batching={"max_batch_size": 4, "max_queue_size": 8})
    client, _ = make_server([model], settings)
    # budget: 8 rows (the queue, smaller than max_rows_per_request) x 2 containers + 64 = 80 lists/objects
    r = client.post("/predict", json={"inputs": np.ones((100, 3)).tolist()})
    assert r.status_code == 413 and "102 JSON lists/objects" in r.json()["error"]
    assert "at most 80" in r.json()["error"] and "queue size" in r.json()["error"]
    assert model.batch_sizes == []

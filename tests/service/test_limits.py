"""Costs bounded before they are paid: requests that can never succeed are refused up front with 4xx."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service import Settings
from service.batcher import DynamicBatcher, QueueFull, RequestTooLarge

from .fakes import PATIENCE_S, doubler
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


@pytest.mark.parametrize("path", ["/predict", "/v1/models/double:predict", "/v2/models/double/infer"])
def test_a_json_body_past_any_valid_requests_size_is_refused_before_the_rest_is_read(make_server, path):  # noqa: F811
    """32 MB of ``[[],[],...]`` declared, 1 MB sent: the 413 comes after the first chunks (the server
    cannot have waited for the body: the rest never comes, which would end in a 408 after 30 s)."""
    import socket

    client, _ = make_server([doubler()], Settings(max_body_bytes=32 * 1024 * 1024))
    host, port = client.base_url.host, client.base_url.port
    declared = 32 * 1024 * 1024
    with socket.create_connection((host, port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {declared}\r\n\r\n".encode())
        s.sendall(b'{"inputs": [' + b"[]," * (1024 * 1024 // 3))
        s.settimeout(PATIENCE_S)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 413"), answer[:300]
    assert "connection: close" in head.lower()

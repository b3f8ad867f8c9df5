"""Hot reload under load with the real model: a new version dropped into the repository is picked
up by the poller, warmed up in the background and swapped in without failing a request.

Every step waits for an event (answers counted, a version seen, a failure counted), never for a time;
the latency during the swap is printed (a figure for a quiet machine), not asserted.
"""
from __future__ import annotations

import shutil
import threading
import time

import httpx
import numpy as np
from prometheus_client import CollectorRegistry

from service import Settings, create_app

from .fakes import PATIENCE_S, wait_until
from .realmodel import REPO, heldout
from .server import serve
from .test_app import wait_ready


def _write_version(repo, version: int, arrays: dict | None = None, raw: bytes | None = None):
    """Write a version atomically: build it beside the repository, then rename it into place."""
    tmp = repo / "digits" / f".tmp-{version}"
    tmp.mkdir()
    if raw is not None:
        (tmp / "model.npz").write_bytes(raw)
    else:
        np.savez(tmp / "model.npz", **arrays)
    tmp.rename(repo / "digits" / str(version))


def _shifted_weights():
    """Version 2: the same network with a large bias towards class 0, so its answers differ."""
    src = np.load(next((REPO / "digits" / "1").glob("*.npz")))
    arrays = {k: src[k] for k in src.files}
    key = next(k for k in arrays if k.startswith("fc1/b"))
    arrays[key] = arrays[key].copy()
    arrays[key][0] += 100.0
    return arrays


def test_new_version_swaps_in_under_load_without_failures(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    x, _ = heldout()
    registry = CollectorRegistry()
    app = create_app(Settings(model_repository=repo, poll_interval_s=0.2, intra_op_threads=2, inter_op_threads=2),
                     registry=registry)
    results = []      # (t_sent, latency_s, status, version, class of row 0), in the order answers came
    stop = threading.Event()

    def client_loop(seed):
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while not stop.is_set() and len(results) < 3000:
                idx = rng.integers(0, len(x), size=2)
                t0 = time.monotonic()
                r = c.post("/predict", json={"inputs": x[idx].tolist(), "outputs": ["prob"]})
                dt = time.monotonic() - t0
                body = r.json()
                cls = int(np.argmax(body["outputs"]["prob"][0])) if r.status_code == 200 else None
                results.append((t0, dt, r.status_code, body.get("version"), cls))

    with serve(app) as srv, httpx.Client(base_url=srv.url) as client:
        assert wait_ready(client, 120).status_code == 200
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: len(results) >= 300, "300 answers from version 1", timeout_s=120)
        t_swap = time.monotonic()
        _write_version(repo, 2, _shifted_weights())
        wait_until(lambda: any(v == "2" for _, _, _, v, _ in results[-50:]), "version 2 to be served", timeout_s=120)
        t_served = time.monotonic()
        n_at_switch = len(results)
        wait_until(lambda: len(results) >= n_at_switch + 300, "300 answers after the swap", timeout_s=120)
        # a corrupt version 3: counted as a failure, version 2 keeps serving
        _write_version(repo, 3, raw=b"this is not an npz file")
        wait_until(lambda: registry.get_sample_value("tpserve_model_load_failures_total", {"model": "digits"}),
                   "the corrupt version to be attempted", timeout_s=120)
        n_after_bad = len(results)
        wait_until(lambda: len(results) >= n_after_bad + 150, "150 answers after the corrupt version",
                   timeout_s=120)
        stop.set()
        for t in threads:
            t.join(PATIENCE_S)
        status = {m["name"]: m for m in client.get("/models").json()}["digits"]

    statuses = [s for _, _, s, _, _ in results]
    assert len(results) >= 750
    assert statuses.count(200) == len(results), {s: statuses.count(s) for s in set(statuses)}
    versions = [v for *_, v, _ in results]
    assert versions[0] == "1" and versions[-1] == "2"
    # the swap is one-way: once an answer of version 2 has arrived, every request sent after it is
    # answered by version 2 (none goes back to the old weights)
    first_v2_done = min(t0 + dt for t0, dt, _, v, _ in results if v == "2")
    assert {v for t0, _, _, v, _ in results if t0 > first_v2_done} == {"2"}
    # answers really come from the new weights: version 2 predicts class 0 for everything
    assert all(c == 0 for *_, v, c in results if v == "2")
    assert any(c != 0 for *_, v, c in results if v == "1")
    steady = [dt for t0, dt, *_ in results if t0 < t_swap]
    during = [dt for t0, dt, *_ in results if t_swap <= t0 <= t_served + 0.5]
    p99_steady, p99_swap = np.percentile(steady, 99), np.percentile(during, 99)
    print(f"\nreload under load: {len(results)} requests, all 200; p99 steady {p99_steady * 1e3:.1f} ms, "
          f"p99 during swap {p99_swap * 1e3:.1f} ms ({len(during)} requests in the swap window)")
    assert status["version"] == "2" and status["state"] == "READY"
    assert "version 3 failed" in status["error"]

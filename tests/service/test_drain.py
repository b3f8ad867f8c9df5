"""SIGTERM under load against a real `python -m service` subprocess with the bundled model.

Ordered by events, not by sleeps: the signal is sent once the clients have had answers, the clients stop
once /readyz has answered 503 "draining" (so some requests were sent inside the grace window), and the
process is waited for. No assertion depends on how long anything took; the grace window (3 s) is only
the room the server has to answer one /readyz and the requests already sent, which a loaded machine
stretches by milliseconds, not seconds.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .fakes import PATIENCE_S, wait_until
from .realmodel import REPO, ROOT, heldout

GRACE_S = 3.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, path: str) -> int | None:
    try:
        return httpx.get(url + path, timeout=PATIENCE_S).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("workers", ["2", "0"], ids=["front-ends", "embedded"])
def test_sigterm_drains_accepted_requests_and_exits_zero(tmp_path, workers):
    port = _free_port()
    env = dict(os.environ, TPSERVE_DRAIN_GRACE_S=str(GRACE_S), TPSERVE_SHUTDOWN_TIMEOUT_S="20",
               TF_CPP_MIN_LOG_LEVEL="2", TPSERVE_INTRA_OP_THREADS="2", TPSERVE_INTER_OP_THREADS="2",
               TPSERVE_WORKERS=workers)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--model-repository", str(REPO)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    sent = []          # (t_sent, status or exception name), in the order the answers came
    try:
        wait_until(lambda: proc.poll() is not None or _status(url, "/readyz") == 200, "the server to be ready",
                   timeout_s=300, poll_s=0.2)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()

        x, _ = heldout()
        stop = threading.Event()

        def client_loop():
            with httpx.Client(base_url=url, timeout=PATIENCE_S) as c:
                while not stop.is_set():
                    t = time.monotonic()
                    try:
                        r = c.post("/predict", json={"inputs": x[:4].tolist()})
                        sent.append((t, r.status_code))
                    except httpx.HTTPError as e:
                        sent.append((t, type(e).__name__))

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: len(sent) >= 40, "40 answers under load before the signal")
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # the server still answers, and says it is draining: readiness first, inference meanwhile
        ready = httpx.get(url + "/readyz", timeout=PATIENCE_S)
        t_ready = time.monotonic()
        assert ready.status_code == 503 and "draining" in ready.text, ready.text
        wait_until(lambda: any(t > t_term and s == 200 for t, s in list(sent)),
                   "a request sent after SIGTERM to be served in the grace window")
        stop.set()
        for t in threads:
            t.join(PATIENCE_S)
        rc = proc.wait(timeout=120)
        t_exit = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    before = [s for t, s in sent if t < t_term]
    after = [s for t, s in sent if t >= t_term]
    print(f"\nSIGTERM under load: {len(before)} requests before the signal ({sorted(set(map(str, before)))}), "
          f"{len(after)} after it ({sorted(set(map(str, after)))}), /readyz 503 {t_ready - t_term:.2f} s after it, "
          f"exit code {rc} after {t_exit - t_term:.2f} s")
    assert rc == 0, (tmp_path / "server.log").read_text()[-3000:]
    # every request the server had before the signal was answered, and answered right
    assert len(before) >= 40 and set(before) == {200}
    # after it: served (grace window), then refused with 503, or not connected once the socket closed;
    # never an error for a request the server had accepted
    assert set(after) <= {200, 503, "ConnectError"}, sorted(set(map(str, after)))

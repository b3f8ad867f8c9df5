"""SIGTERM under load against a real `python -m service` subprocess with the bundled model."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from .realmodel import REPO, ROOT, heldout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_drains_accepted_requests_and_exits_zero(tmp_path):
    port = _free_port()
    env = dict(os.environ, TPSERVE_DRAIN_GRACE_S="1.0", TPSERVE_SHUTDOWN_TIMEOUT_S="20", TF_CPP_MIN_LOG_LEVEL="2",
               TPSERVE_INTRA_OP_THREADS="2", TPSERVE_INTER_OP_THREADS="2")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--model-repository", str(REPO)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - t0 < 180, "server never became ready"
            time.sleep(0.2)

        x, _ = heldout()
        sent = []          # (t_sent, status or exception name)
        stop = threading.Event()

        def client_loop():
            with httpx.Client(base_url=url, timeout=60) as c:
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
        time.sleep(1.5)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503 and "draining" in ready.text
        time.sleep(1.2)          # past the 1 s grace window: new requests are refused
        stop.set()
        for t in threads:
            t.join(60)
        rc = proc.wait(timeout=30)
        t_exit = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    before = [s for t, s in sent if t < t_term]
    in_grace = [s for t, s in sent if t_term <= t < t_term + 0.9]
    print(f"\nSIGTERM under load: {len(before)} requests before the signal (all {set(before)}), "
          f"{len(in_grace)} in the grace window, exit code {rc} after {t_exit - t_term:.2f} s")
    assert rc == 0
    assert len(before) > 20 and set(before) == {200}
    assert set(in_grace) <= {200}
    assert t_exit - t_term < 1.0 + 20 + 5

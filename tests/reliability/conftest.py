"""Servers for the reliability tests: in-thread (fast, shares the test's process) and subprocess
(its own RSS and file descriptors, measured through /proc), both on 127.0.0.1 only."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from service import Settings, create_app
from tests.service.server import serve

from .models import Repository

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None, require_ready=True):
    """Until /readyz is 200 (or, with ``require_ready=False``, until no model is still loading)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            r = httpx.get(url + "/readyz", timeout=5)
            if r.status_code == 200:
                return
            if not require_ready and all("LOADING" not in x and "scanned" not in x for x in r.json()["reasons"]):
                return
            last = r.text
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout_s} s: {last}")


class ThreadServer:
    def __init__(self, models, settings: Settings, broken=(), repository=None, **uvicorn_config):
        self.repository = repository if repository is not None else Repository(models, broken)
        self.registry = CollectorRegistry()
        self.app = create_app(settings, registry=self.registry, repository=self.repository)
        self._cm = serve(self.app, **uvicorn_config)
        self.srv = self._cm.__enter__()
        self.port = self.srv.port
        self.url = self.srv.url
        wait_ready(self.url, timeout_s=180, require_ready=not broken)

    def metric(self, name, labels=None):
        return self.registry.get_sample_value(name, labels or {})

    def close(self):
        self._cm.__exit__(None, None, None)


class ProcServer:
    """``python -m tests.reliability.fake_server`` (fake models) or ``python -m service`` (real models)."""

    def __init__(self, spec: dict | None = None, *, real_repository: Path | None = None, env: dict | None = None,
                 log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **(env or {}))
        if real_repository is not None:
            cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port),
                   "--model-repository", str(real_repository), "--log-level", "warning"]
        else:
            cmd = [sys.executable, "-m", "tests.reliability.fake_server", "--port", str(self.port),
                   "--spec", json.dumps(spec)]
        self.log = open(log_path or os.devnull, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        try:
            wait_ready(self.url, timeout_s=180 if real_repository else 60, proc=self.proc)
        except BaseException:
            self.close()
            raise

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM (peak) in bytes, from /proc."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
        return out

    def rss(self) -> int:
        return self.status()["VmRSS"]

    def peak_rss(self) -> int:
        return self.status()["VmHWM"]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def thread_server():
    servers = []

    def make(models, settings: Settings | None = None, **kw) -> ThreadServer:
        s = ThreadServer(models, settings or Settings(max_body_bytes=1 << 20), **kw)
        servers.append(s)
        return s

    def real(repository, settings: Settings) -> ThreadServer:
        """The app over a real repository (TensorFlow models) instead of fakes."""
        return make(None, settings, repository=repository)

    make.real = real
    yield make
    for s in reversed(servers):
        s.close()


@pytest.fixture
def proc_server():
    servers = []

    def make(spec=None, **kw) -> ProcServer:
        s = ProcServer(spec, **kw)
        servers.append(s)
        return s

    yield make
    for s in reversed(servers):
        s.close()


def report(request, **numbers):
    """Print figures to the terminal (-s / the -ra summary) and append them to the run's record."""
    line = f"[reliability] {request.node.name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items())
    print(line)
    path = os.environ.get("TPSERVE_RELIABILITY_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": request.node.nodeid, **numbers}, default=str) + "\n")

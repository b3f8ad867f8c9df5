"""``python -m service`` with front-end processes: the supervisor (the process you start).

Processes::

    supervisor (this module: binds the port, starts and watches the others; no TensorFlow, no HTTP)
    ├── engine      TensorFlow, replicas, one batcher per version (service.engine)
    └── front end × TPSERVE_WORKERS: HTTP on the shared port       (service.frontend)

Front ends talk to the engine over a Unix socket with small frames; tensors go through
shared memory (:mod:`service.shm`). Metrics of every process are aggregated by each front end's
``/metrics`` (prometheus_client's multiprocess mode, in a private temporary directory).

Watching: the supervisor waits on the children's process sentinels, so a death is seen at once.

* a front end that dies is restarted (after 1 s if it died within 1 s of starting: no hot loop);
  the other front ends keep serving meanwhile;
* an engine that dies takes the server down: the front ends are stopped and the supervisor exits
  with status 1, so that the orchestrator (Kubernetes, compose ``restart:``, systemd) restarts the
  whole server. Restarting only the engine would leave a server up but not ready for as long as
  the models take to load, which a restart policy and readiness probe already express better.

SIGTERM drains: the engine's graceful drain (readiness 503 at once, new requests accepted for
``drain_grace_s``, then refused while accepted work finishes, see :meth:`ModelManager.drain`),
then the front ends stop (finishing responses in progress), then the engine stops its models and
exits; the supervisor exits 0. A second SIGTERM, or SIGINT (Ctrl-C), stops without the drain.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

__all__ = ["serve", "default_workers"]

logger = logging.getLogger("tpserve")

_SIGNAL_POLL_S = 1.0
_FRONTEND_STOP_S = 5.0     # uvicorn's 3 s graceful window + start-up slack


def default_workers(cpus: int | None = None) -> int:
    """Front ends when TPSERVE_WORKERS is not set: one per two CPUs (the container's CPU quota counts), at
    least 1, at most 8 (measured: bench/README.md, "Front-end processes")."""
    if cpus is None:
        from .process import available_cpus

        cpus = available_cpus()
    return max(1, min(8, cpus // 2))


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port} ({what}): {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings, workers: int):
        self.settings = settings
        self.workers = workers
        self.sock = _bind(settings.host, settings.port, "HTTP")    # first: a port in use is the first error
        self.port = self.sock.getsockname()[1]
        if settings.grpc_port:
            # The front ends bind the gRPC port with SO_REUSEPORT (to share it); another server of the same
            # user holding it that way would silently share it too. An exclusive bind now tells them apart.
            try:
                _bind(settings.host, settings.grpc_port, "gRPC").close()
            except OSError:
                self.sock.close()
                raise
        self.ctx = mp.get_context("spawn")
        self.tmp = tempfile.mkdtemp(prefix="tpserve-")
        self.socket_path = os.path.join(self.tmp, "engine.sock")
        metrics_dir = os.path.join(self.tmp, "metrics")
        os.mkdir(metrics_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir    # inherited by the children (read at import)
        self.engine = None
        self.control = None
        self.frontends: dict[int, mp.Process] = {}
        self.started: dict[int, float] = {}
        self.stopping = False
        self.exit_code = 0
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # ------------------------------------------------------------------ children
    def _start_engine(self):
        from .engine import engine_main

        self.control, child = self.ctx.Pipe()
        self.engine = self.ctx.Process(target=engine_main, name="tpserve-engine", daemon=False,
                                       args=(self.settings, self.socket_path, child, self.settings.log_level))
        self.engine.start()
        child.close()

    def _start_frontend(self, index: int):
        from .frontend import frontend_main

        arena = self.settings.shm_arena_mb * 1024 * 1024
        share = max(1, -(-self.settings.max_connections // self.workers))
        p = self.ctx.Process(target=frontend_main, name=f"tpserve-frontend-{index}", daemon=False,
                             args=(self.settings, self.sock, self.socket_path, arena, share, self.settings.log_level))
        p.start()
        self.frontends[index] = p
        self.started[index] = time.monotonic()

    def _on_signal(self, sig, frame):
        self._signals.append(sig)

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            self._start_engine()
            if not self._wait_engine_up():
                return self._finish(1)
            for i in range(self.workers):
                self._start_frontend(i)
            logger.info("tpserve listening on http://%s:%d: engine pid %d, %d front end(s) %s", self.settings.host,
                        self.port, self.engine.pid, self.workers, [p.pid for p in self.frontends.values()])
            return self._watch()
        finally:
            signal.set_wakeup_fd(-1)

    def _wait_engine_up(self) -> bool:
        while True:
            ready = mp.connection.wait([self.control, self.engine.sentinel, self._wake_r], _SIGNAL_POLL_S)
            if self._drain_signals():
                self._stop_engine(fast=True)
                return False
            if self.control in ready:
                try:
                    if self.control.recv() == "up":
                        return True
                except EOFError:
                    pass
            if self.engine.sentinel in ready or not self.engine.is_alive():
                logger.error("the engine process exited during start-up (exit code %s)", self.engine.exitcode)
                return False

    def _drain_signals(self) -> list[int]:
        try:
            while self._wake_r.recv(64):
                pass
        except (BlockingIOError, OSError):
            pass
        sigs, self._signals = self._signals, []
        return sigs

    def _watch(self) -> int:
        while True:
            sentinels = {p.sentinel: i for i, p in self.frontends.items()}
            ready = mp.connection.wait([self.engine.sentinel, self.control, self._wake_r, *sentinels],
                                       _SIGNAL_POLL_S)
            for sig in self._drain_signals():
                if sig == signal.SIGTERM and not self.stopping:
                    self.stopping = True
                    logger.info("SIGTERM: draining (engine first, then the front ends)")
                    self.control.send("drain")
                else:
                    logger.info("%s: stopping now", signal.Signals(sig).name)
                    return self._shutdown(fast=True)
            if self.control in ready:
                try:
                    msg = self.control.recv()
                except EOFError:
                    msg = None
                if msg == "drained":
                    return self._shutdown(fast=False)
            if self.engine.sentinel in ready or not self.engine.is_alive():
                self.engine.join()
                logger.error("the engine process died (%s): stopping the server so that it is restarted whole",
                             _how(self.engine.exitcode))
                self._stop_frontends()
                return self._finish(1)
            for s, i in sentinels.items():
                if s in ready:
                    p = self.frontends[i]
                    p.join()
                    if self.stopping:
                        continue
                    lived = time.monotonic() - self.started[i]
                    logger.error("front end %d (pid %d) died (%s) after %.1f s; restarting it", i, p.pid,
                                 _how(p.exitcode), lived)
                    _mark_dead(p.pid)
                    if lived < 1.0:
                        time.sleep(1.0)
                    self._start_frontend(i)
                    logger.info("front end %d restarted: pid %d", i, self.frontends[i].pid)

    # ------------------------------------------------------------------ stopping
    def _stop_frontends(self):
        for p in self.frontends.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGUSR1)
        deadline = time.monotonic() + _FRONTEND_STOP_S
        for p in self.frontends.values():
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                logger.error("front end pid %d did not stop in %.0f s: killed", p.pid, _FRONTEND_STOP_S)
                p.kill()
                p.join()

    def _stop_engine(self, fast: bool):
        try:
            self.control.send("stop")
        except (BrokenPipeError, OSError):
            pass
        timeout = self.settings.shutdown_timeout_s + 5 + (0 if fast else self.settings.drain_grace_s)
        self.engine.join(timeout)
        if self.engine.is_alive():
            logger.error("the engine did not stop within %.0f s: killed", timeout)
            self.engine.kill()
            self.engine.join()
            return False
        return self.engine.exitcode == 0

    def _shutdown(self, fast: bool) -> int:
        self.stopping = True
        self.sock.close()
        self._stop_frontends()
        ok = self._stop_engine(fast)
        return self._finish(0 if ok else 1)

    def _finish(self, code: int) -> int:
        for p in self.frontends.values():
            if p.is_alive():
                p.kill()
        if self.engine is not None and self.engine.is_alive():
            self.engine.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        _remove_segments()
        return code


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _mark_dead(pid: int):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def _remove_segments():
    """Shared-memory files of children that died without removing theirs (named after their pid)."""
    from .shm import shm_dir

    alive = {os.getpid()}
    for name in os.listdir(shm_dir()):
        if name.startswith("tpserve-"):
            try:
                pid = int(name.split("-")[-2])
            except (ValueError, IndexError):
                continue
            if pid not in alive and not _pid_alive(pid):
                try:
                    os.unlink(os.path.join(shm_dir(), name))
                except OSError:
                    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(settings) -> int:
    """Run the multi-process server until it is stopped; return the process's exit status."""
    from .process import available_cpus

    workers = settings.workers if settings.workers is not None else default_workers()
    if settings.intra_op_threads == 0 and not settings.device.startswith("gpu"):
        # Embedded, TensorFlow leaves one core to the event loop. Here the front ends are other processes and
        # the OS shares the cores: TensorFlow may use all of them (its threads idle between batches). Measured
        # on 2 CPUs: CIFAR ResNet-20 .npy/v2 binary +30% with 2 threads instead of 1, the digits model equal.
        settings = settings.model_copy(update={"intra_op_threads": available_cpus()})
    try:
        sup = Supervisor(settings, workers)
    except OSError as e:
        logger.error("%s", e.strerror or e)
        return 1
    code = sup.run()
    sys.stdout.flush()
    return code

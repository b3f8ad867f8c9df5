"""A front-end process of the multi-process server: HTTP, parsing, validation, image decoding, encoding.

It runs the same FastAPI app as the embedded server (:func:`service.app.create_app`) with a
:class:`service.remote.RemoteManager` in place of the model manager, on the listening socket the
supervisor bound and shares with every front end (the kernel hands each new connection to one of
them). It never imports TensorFlow.

Stopping: SIGUSR1 (sent by the supervisor once the engine has drained) closes the socket and
finishes the requests in progress (3 s at most); SIGINT/SIGTERM are ignored (see
:mod:`service.process`). If the engine's connection closes, the front end stops by itself.
"""
from __future__ import annotations

import contextlib
import signal

import uvicorn

__all__ = ["frontend_main", "FrontEndServer"]


class FrontEndServer(uvicorn.Server):
    """uvicorn.Server that stops on SIGUSR1 only (the supervisor's word)."""

    @contextlib.contextmanager
    def capture_signals(self):
        previous = signal.signal(signal.SIGUSR1, self.handle_exit)
        try:
            yield
        finally:
            signal.signal(signal.SIGUSR1, previous)

    def stop_soon(self):
        self.should_exit = True


def frontend_main(settings, sock, socket_path: str, arena_bytes: int, limits_share: int, log_level: str):
    """Entry point of a front-end process (spawned by the supervisor)."""
    from .process import configure_process

    configure_process("front end", log_level)
    from .app import create_app
    from .httpserver import uvicorn_limits
    from .metrics import Metrics
    from .remote import RemoteManager

    metrics = Metrics.multiprocess()
    server: FrontEndServer | None = None
    manager = RemoteManager(settings, metrics, socket_path, arena_bytes,
                            on_engine_lost=lambda: server is not None and server.stop_soon())
    app = create_app(settings, manager=manager, metrics=metrics)
    limits = uvicorn_limits(settings)
    limits["limit_concurrency"] = limits_share        # this process's share of max_connections
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=3, **limits)
    server = FrontEndServer(config)
    from .process import settle_heap

    settle_heap()
    try:
        server.run(sockets=[sock])
    finally:
        manager.client.close()

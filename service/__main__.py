"""``python -m service`` / ``tpserve``: serve the model repository with uvicorn.

SIGTERM drains gracefully (what Kubernetes sends before killing a pod):

1. readiness (``/readyz``, ``/v2/health/ready``) answers 503 at once, so load balancers stop routing;
2. for ``drain_grace_s`` new inference requests are still accepted (routing updates take time);
3. then new inference requests get 503, queued and running batches finish;
4. uvicorn closes and the process exits 0 — all within ``shutdown_timeout_s`` (+ the grace window).

A second SIGTERM or a SIGINT (Ctrl-C) stops at once, as uvicorn normally does.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

import uvicorn

logger = logging.getLogger("tpserve")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM drains the app instead of closing the socket at once."""

    def __init__(self, config, app):
        super().__init__(config)
        self._app = app
        self._draining = False

    def handle_exit(self, sig, frame):
        if sig != signal.SIGTERM or self._draining:
            return super().handle_exit(sig, frame)
        self._draining = True
        # uvicorn installs this with signal.signal: we are between two bytecodes of the loop's
        # thread, so hand the work to the loop rather than touching it directly. Not recording the
        # signal in _captured_signals means uvicorn will not re-raise it after shutdown: exit code 0.
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self):
        state = self._app.state
        settings, manager = state.settings, state.manager
        t0 = time.monotonic()
        manager.draining = True
        logger.info("SIGTERM: readiness is now 503; accepting requests for %.1f s more", settings.drain_grace_s)
        await asyncio.sleep(settings.drain_grace_s)
        manager.accepting = False
        deadline = t0 + settings.drain_grace_s + settings.shutdown_timeout_s
        while time.monotonic() < deadline:
            busy = [e for e in manager.entries.values()
                    if e.batcher is not None and (e.batcher.queued_rows or e.batcher.running_batches)]
            if not busy:
                break
            await asyncio.sleep(0.05)
        logger.info("drained in %.2f s; shutting down", time.monotonic() - t0)
        self.should_exit = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tpserve", description="Serve the models of a model repository over HTTP. Every option can also be "
        "set as a TPSERVE_* environment variable or in a YAML/JSON file (TPSERVE_CONFIG_FILE). SIGTERM drains "
        "gracefully (see the module docstring of service/__main__.py).")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model-repository", help="model repository directory (default ./model_repository)")
    parser.add_argument("--config-file", help="YAML or JSON settings file")
    parser.add_argument("--device", help="'auto', 'cpu' or 'gpu:0,1'")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    # Quiet TensorFlow's C++ start-up chatter unless the operator asked for it (this is the server
    # process's entry point, not a library import).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from pydantic import ValidationError

    from .app import create_app
    from .settings import Settings

    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except (ValidationError, ValueError) as e:
        print(f"tpserve: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # The drain above waits for queued and running batches; uvicorn then only has responses left to
    # write, so its own graceful window is short and shutdown stays within grace + timeout + 3 s.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=3)
    server = DrainingServer(config, app)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

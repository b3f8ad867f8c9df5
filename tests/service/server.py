"""A real uvicorn server on 127.0.0.1 (ephemeral port) running in a background thread."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import httpx
import uvicorn


class ServerThread:
    def __init__(self, app, **config):
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                     lifespan="on", **config)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = None

    def _run(self):
        asyncio.run(self.server.serve())

    def start(self, timeout_s=120.0):
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn server thread died during start-up")
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(60)


@contextlib.contextmanager
def serve(app, **config):
    srv = ServerThread(app, **config).start()
    try:
        yield srv
    finally:
        srv.stop()


def wait_models_settled(client, proc, log_path, count: int | None = None, timeout_s: float = 120.0):
    """Poll a ``python -m service`` subprocess's ``/models`` until every model (``count`` of them, when
    given) has finished loading or failed; fail with the server's log if it dies or ``timeout_s`` passes."""
    from .fakes import wait_until

    def settled():
        assert proc.poll() is None, log_path.read_text()
        try:
            models = client.get("/models").json()
        except httpx.HTTPError:
            return False
        return bool(models) and count in (None, len(models)) and all(m["state"] != "LOADING" for m in models)

    try:
        wait_until(settled, "the models to finish loading", timeout_s)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{log_path.read_text()}") from None

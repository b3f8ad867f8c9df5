"""Daemon threads for work the service may have to abandon (no TensorFlow, no HTTP).

``concurrent.futures.ThreadPoolExecutor`` threads, and those behind ``asyncio.to_thread``, are joined
when the interpreter exits (and ``asyncio.run`` waits for the default executor): one TensorFlow call
that never returns would keep the process alive past every shutdown deadline, until the orchestrator
kills it. Batches, model loads and model closes run on the daemon threads below instead, so shutdown
can give up on them at its deadline and the process still exits.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future

__all__ = ["DaemonThreadPool", "in_daemon_thread"]


def _run(future: Future, fn: Callable, args: tuple, kwargs: dict):
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - handed to whoever awaits the future
        future.set_exception(e)
    else:
        future.set_result(result)


class DaemonThreadPool(Executor):
    """A fixed number of daemon worker threads serving one FIFO of calls (for ``loop.run_in_executor``).

    ``shutdown(wait=False)`` lets calls already queued run, then the workers end; a worker stuck in a
    call stays stuck, but being a daemon it does not hold up the interpreter's exit."""

    def __init__(self, workers: int, name: str = "daemon"):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"DaemonThreadPool: workers must be an int >= 1, got {workers!r}")
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._closed:
            raise RuntimeError("DaemonThreadPool.submit after shutdown()")
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _work(self):
        while (call := self._calls.get()) is not None:
            _run(*call)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False):
        if self._closed:
            return
        self._closed = True
        if cancel_futures:
            # drop what has not started: cancelled futures are skipped by the workers
            pending = []
            while True:
                try:
                    pending.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            for call in pending:
                if call is not None:
                    call[0].cancel()
        for _ in self._threads:
            self._calls.put(None)
        if wait:
            for t in self._threads:
                t.join()


def in_daemon_thread(fn: Callable, *args, name: str = "tpserve-call") -> Future:
    """Run ``fn(*args)`` on a new daemon thread; await it with ``asyncio.wrap_future``. For rare calls
    (model loads and closes) that shutdown may have to abandon."""
    future: Future = Future()
    threading.Thread(target=_run, args=(future, fn, args, {}), name=name, daemon=True).start()
    return future

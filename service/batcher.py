"""Adaptive dynamic batcher: queues requests and runs them in batches on a set of replicas.

Knows nothing of TensorFlow or HTTP: it batches dicts of NumPy arrays (rows along axis 0) and
calls ``run_batch(replica_index, inputs) -> outputs`` in worker threads.

Policy:
* a batch is dispatched as soon as a replica slot is free — no idle waiting at low load;
* while every slot is busy, requests accumulate and the next batch takes as many queued rows as
  fit in ``max_batch_size`` (so batch size adapts to load);
* ``max_queue_delay_s > 0`` lets a free replica wait up to that long for a batch to fill;
* a request with more rows than ``max_batch_size`` is split into chunks and reassembled;
* the queue is bounded in rows: beyond ``max_queue_rows`` a request is refused (``QueueFull``)
  with a Retry-After estimate from the measured service rate;
* a request past its deadline is answered ``DeadlineExceeded`` and never computed; a cancelled
  request (client gone) is dropped before it is computed;
* an exception in ``run_batch`` fails exactly the requests in that batch (``BatchFailed``);
* health: ``health()`` says why the model can no longer serve — ``unhealthy_after_failures``
  consecutive failed batches, or a batch running longer than ``stuck_batch_s`` (a hung model);
  while every slot holds such a stuck batch, new requests are refused at once (``ModelUnavailable``)
  instead of waiting for their deadline. A successful batch clears the failure count.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .threads import DaemonThreadPool

__all__ = ["DynamicBatcher", "BatcherError", "QueueFull", "DeadlineExceeded", "BatchFailed", "ShuttingDown",
           "ModelUnavailable", "RequestTooLarge", "BatchObserver", "InputHold"]

Arrays = Mapping[str, np.ndarray]


class BatcherError(Exception):
    """Base of the batcher's request-level errors."""


class QueueFull(BatcherError):
    def __init__(self, queued_rows: int, limit: int, retry_after_s: float):
        super().__init__(f"queue full: {queued_rows} rows waiting, limit {limit}; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class RequestTooLarge(BatcherError):
    """More rows in one request than the queue can ever hold: no retry can succeed (HTTP 413, not 429)."""

    def __init__(self, rows: int, limit: int):
        super().__init__(f"{rows} rows in one request, but this model's queue holds at most {limit} rows "
                         "(max_queue_size): split the request")
        self.rows, self.limit = rows, limit


class DeadlineExceeded(BatcherError):
    pass


class BatchFailed(BatcherError):
    pass


class ShuttingDown(BatcherError):
    pass


class ModelUnavailable(BatcherError):
    pass


class InputHold(Protocol):
    """Told when the batcher takes and lets go of a request's input arrays (``submit(hold=...)``): one
    ``acquire()`` per queued chunk, one ``release()`` when no batch will read that chunk any more.
    The engine process uses it to keep a cancelled request's shared memory until its batch is over."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class BatchObserver(Protocol):
    def on_batch(self, rows: int, requests: int, queue_waits_s: list[float], compute_s: float,
                 replica: int) -> None: ...

    def on_queue_rows(self, rows: int) -> None: ...

    def on_reject(self, reason: str) -> None: ...


class _NullObserver:
    def on_batch(self, rows, requests, queue_waits_s, compute_s, replica):
        pass

    def on_queue_rows(self, rows):
        pass

    def on_reject(self, reason):
        pass


@dataclass(eq=False)
class _Item:
    inputs: Arrays
    rows: int
    future: asyncio.Future
    deadline: float | None
    enqueued: float = field(default_factory=time.monotonic)
    state: str = "queued"   # queued -> running | dropped
    hold: InputHold | None = None

    def release(self):
        """No batch will read this item's inputs any more (dropped before running, or its batch ended)."""
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.release()


class DynamicBatcher:
    """See the module docstring. Create, ``await start()``, ``await submit(...)``, ``await stop()``."""

    def __init__(self, run_batch: Callable[[int, Arrays], Mapping[str, np.ndarray]], *, replicas: int = 1,
                 max_batch_size: int = 64, max_queue_delay_s: float = 0.0, max_queue_rows: int = 2048,
                 inflight_per_replica: int = 1, observer: BatchObserver | None = None, name: str = "model",
                 unhealthy_after_failures: int = 0, stuck_batch_s: float = 0.0):
        for arg, val, lo in (("replicas", replicas, 1), ("max_batch_size", max_batch_size, 1),
                             ("max_queue_rows", max_queue_rows, 1), ("inflight_per_replica", inflight_per_replica, 1)):
            if not isinstance(val, int) or val < lo:
                raise ValueError(f"DynamicBatcher: {arg} must be an int >= {lo}, got {val!r}")
        if not (max_queue_delay_s >= 0):
            raise ValueError(f"DynamicBatcher: max_queue_delay_s must be >= 0, got {max_queue_delay_s!r}")
        self.name = name
        self._run_batch = run_batch
        self.replicas = replicas
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = float(max_queue_delay_s)
        self.max_queue_rows = max_queue_rows
        self._observer = observer or _NullObserver()
        self._slots = [r for _ in range(inflight_per_replica) for r in range(replicas)]
        self._n_slots = len(self._slots)
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._executor: DaemonThreadPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._idle = asyncio.Event()
        self._rate_rows_per_s = 0.0   # EWMA of the service rate, for Retry-After
        self.unhealthy_after_failures = unhealthy_after_failures   # 0 = never
        self.stuck_batch_s = float(stuck_batch_s)                   # 0 = no watchdog
        self._consecutive_failures = 0
        self._last_failure = ""
        self._running_since: dict[int, float] = {}                  # id(batch) -> start (monotonic)
        self._running_items: dict[int, list[_Item]] = {}            # id(batch) -> its requests

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def running_batches(self) -> int:
        return self._running

    def _stuck_batches(self, now: float) -> int:
        if not self.stuck_batch_s:
            return 0
        return sum(1 for t in self._running_since.values() if now - t > self.stuck_batch_s)

    def oldest_running_s(self) -> float:
        """Seconds the longest-running batch has been running (0 when idle)."""
        if not self._running_since:
            return 0.0
        return time.monotonic() - min(self._running_since.values())

    def health(self) -> str | None:
        """None while the model can serve; otherwise why not (see the module docstring)."""
        if self.unhealthy_after_failures and self._consecutive_failures >= self.unhealthy_after_failures:
            return f"{self._consecutive_failures} consecutive batches failed (last: {self._last_failure})"
        now = time.monotonic()
        stuck = self._stuck_batches(now)
        if stuck:
            age = now - min(self._running_since.values())
            return (f"{stuck} batch(es) stuck: running for {age:.1f} s, longer than the {self.stuck_batch_s:g} s "
                    "watchdog (TPSERVE_STUCK_BATCH_TIMEOUT_S)")
        return None

    async def start(self):
        if self._executor is not None:
            raise RuntimeError("DynamicBatcher already started")
        self._loop = asyncio.get_running_loop()
        # daemon threads: a batch that never returns must not keep the process alive after stop()
        self._executor = DaemonThreadPool(self._n_slots, name=f"batch-{self.name}")
        self._idle.set()

    async def stop(self, timeout_s: float = 30.0, *, deadline: float | None = None) -> int:
        """Refuse new work and let queued and running batches finish until ``deadline`` (a
        ``time.monotonic()`` instant; default: ``timeout_s`` from now), then close.

        Returns how many batches were still running at the deadline (0: everything finished). Their
        requests, and any still queued, are answered ``ShuttingDown``; the threads running them are
        daemons, so a batch that never returns cannot keep the process alive. The caller reports it.
        """
        if deadline is None:
            deadline = time.monotonic() + timeout_s
        self._closed = True
        self._kick()
        if self._queue or self._running:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
        while self._queue:
            item = self._queue.popleft()
            self._drop(item, ShuttingDown("the server shut down before this request ran"))
        abandoned = list(self._running_items.values())
        for batch in abandoned:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ShuttingDown(
                        f"model {self.name!r} was stopped while this request's batch was still running "
                        "(shutdown deadline reached)"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=False)
        return len(abandoned)

    # ----------------------------------------------------------------------------- submit
    async def submit(self, inputs: Arrays, deadline: float | None = None, *,
                     hold: InputHold | None = None) -> dict[str, np.ndarray]:
        """Queue ``inputs`` (equal row counts along axis 0) and return the outputs for these rows.

        ``deadline`` is a ``time.monotonic()`` instant; raises DeadlineExceeded, QueueFull,
        ShuttingDown or BatchFailed. ``hold``: see :class:`InputHold` (when ``submit`` returns or
        raises anything but CancelledError, every chunk has been released).
        """
        if self._loop is None:
            raise RuntimeError("DynamicBatcher.submit before start()")
        rows = _row_count(inputs)
        if rows > self.max_queue_rows:
            self._observer.on_reject("too_large")
            raise RequestTooLarge(rows, self.max_queue_rows)
        if self._closed:
            self._observer.on_reject("shutting_down")
            raise ShuttingDown("the server is shutting down")
        if deadline is not None and deadline <= time.monotonic():
            self._observer.on_reject("deadline")
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        if self.stuck_batch_s and self._stuck_batches(time.monotonic()) >= self._n_slots:
            self._observer.on_reject("unavailable")
            raise ModelUnavailable(f"model {self.name!r} is unavailable: {self.health()}")
        if self._queued_rows + rows > self.max_queue_rows:
            self._observer.on_reject("queue_full")
            raise QueueFull(self._queued_rows, self.max_queue_rows, self._retry_after())
        items = []
        for start in range(0, rows, self.max_batch_size):
            chunk = {k: v[start:start + self.max_batch_size] for k, v in inputs.items()} \
                if rows > self.max_batch_size else inputs
            n = min(self.max_batch_size, rows - start)
            item = _Item(chunk, n, self._loop.create_future(), deadline)
            if hold is not None:
                hold.acquire()
                item.hold = hold
            self._queue.append(item)
            self._queued_rows += n
            items.append(item)
        self._observer.on_queue_rows(self._queued_rows)
        self._kick()
        # One future to await (no wait_for/shield tasks: this is the hot path), and a timer that
        # fails it at the deadline.
        waiter = items[0].future if len(items) == 1 else asyncio.gather(*(i.future for i in items))
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(self._loop.time() + max(0.0, deadline - time.monotonic()),
                                       self._expire, items, waiter)
        try:
            results = await waiter
        except asyncio.CancelledError:
            self._abandon(items)          # the client went away: drop what has not run yet
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if len(items) == 1:
            return results
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}

    def _abandon(self, items: list[_Item]):
        for item in items:
            if item.state == "queued":
                self._queued_rows -= item.rows
                item.state = "dropped"
                item.release()
            if not item.future.done():
                item.future.cancel()
        self._observer.on_queue_rows(self._queued_rows)

    def _expire(self, items: list[_Item], waiter: asyncio.Future):
        if waiter.done():
            return
        self._observer.on_reject("deadline")
        waiter.set_exception(DeadlineExceeded("the request's deadline passed while it waited"))
        if len(items) > 1:
            waiter.exception()          # retrieved: the gather's own children are cancelled below
        self._abandon(items)

    # ----------------------------------------------------------------------------- scheduling
    def _retry_after(self) -> float:
        if self._rate_rows_per_s <= 0:
            return 1.0
        return float(max(1, math.ceil(self._queued_rows / self._rate_rows_per_s)))

    def _drop(self, item: _Item, exc: Exception):
        if item.state == "queued":
            self._queued_rows -= item.rows
        item.state = "dropped"
        item.release()
        if not item.future.done():
            item.future.set_exception(exc)

    def _kick(self):
        """Dispatch batches while a slot is free and work is queued."""
        while self._slots and self._queue:
            now = time.monotonic()
            head = self._queue[0]
            if head.state != "queued":
                self._queue.popleft()
                continue
            if (self.max_queue_delay_s > 0 and not self._closed and self._queued_rows < self.max_batch_size
                    and now - head.enqueued < self.max_queue_delay_s):
                if self._timer is None:
                    self._timer = self._loop.call_at(
                        self._loop.time() + (head.enqueued + self.max_queue_delay_s - now), self._on_timer)
                return
            batch, rows = [], 0
            while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
                item = self._queue.popleft()
                if item.state != "queued":
                    continue
                if item.deadline is not None and item.deadline <= now:
                    self._observer.on_reject("deadline")
                    self._drop(item, DeadlineExceeded("the request's deadline passed while it waited"))
                    continue
                item.state = "running"
                self._queued_rows -= item.rows
                batch.append(item)
                rows += item.rows
            if batch:
                replica = self._slots.pop()
                self._running += 1
                self._loop.create_task(self._execute(replica, batch, rows))
        self._observer.on_queue_rows(self._queued_rows)
        if not self._queue and not self._running:
            self._idle.set()

    def _on_timer(self):
        self._timer = None
        self._kick()

    async def _execute(self, replica: int, batch: list[_Item], rows: int):
        started = time.monotonic()
        waits = [started - i.enqueued for i in batch]
        self._running_since[id(batch)] = started
        self._running_items[id(batch)] = batch
        try:
            outputs, compute_s = await self._loop.run_in_executor(self._executor, self._run_in_thread, replica,
                                                                  batch)
        except Exception as e:  # noqa: BLE001 - any model failure fails exactly this batch
            msg = f"inference failed for a batch of {rows} rows: {type(e).__name__}: {str(e)[:200]}"
            self._consecutive_failures += 1
            self._last_failure = msg
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(BatchFailed(msg))
        else:
            self._consecutive_failures = 0
            self._observer.on_batch(rows, len(batch), waits, compute_s, replica)
            rate = rows / max(compute_s, 1e-6) * self.replicas
            self._rate_rows_per_s = rate if self._rate_rows_per_s == 0 else 0.8 * self._rate_rows_per_s + 0.2 * rate
            offset = 0
            for item in batch:
                if not item.future.done():
                    item.future.set_result({k: v[offset:offset + item.rows] for k, v in outputs.items()})
                offset += item.rows
        finally:
            for item in batch:
                item.release()
            self._running_since.pop(id(batch), None)
            self._running_items.pop(id(batch), None)
            self._running -= 1
            self._slots.append(replica)
            self._kick()

    def _run_in_thread(self, replica: int, batch: list[_Item]):
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {k: np.concatenate([i.inputs[k] for i in batch]) for k in batch[0].inputs}
        t0 = time.monotonic()
        outputs = self._run_batch(replica, inputs)
        compute_s = time.monotonic() - t0
        rows = sum(i.rows for i in batch)
        for k, v in outputs.items():
            if len(v) != rows:
                raise RuntimeError(f"model returned {len(v)} rows for output {k!r}, expected {rows}")
        return outputs, compute_s


def _row_count(inputs: Arrays) -> int:
    if not inputs:
        raise ValueError("DynamicBatcher.submit: no inputs")
    counts = {k: (v.shape[0] if getattr(v, "ndim", 0) > 0 else None) for k, v in inputs.items()}
    values = set(counts.values())
    if None in values or len(values) != 1:
        raise ValueError(f"DynamicBatcher.submit: every input needs the same number of rows, got {counts}")
    rows = values.pop()
    if rows == 0:
        raise ValueError("DynamicBatcher.submit: empty batch (0 rows)")
    return rows

"""Unit tests of the dynamic batcher: no TensorFlow, a plain Python run_batch.

Events are ordered, never timed: a batch is held inside ``run_batch`` by a gate (``Recorder.entered`` says
it is there), and :func:`turns_until` lets the event loop run (``asyncio.sleep(0)``, one turn, no delay)
until the batcher reaches a state. No assertion depends on how long anything took.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from service.batcher import BatchFailed, DeadlineExceeded, DynamicBatcher, QueueFull, ShuttingDown

from .fakes import PATIENCE_S


class Recorder:
    """run_batch that doubles its input, optionally slowly, and records every batch it ran. With a
    ``gate``, every batch waits inside run_batch until the gate is set; ``entered`` is set as soon as a
    batch is inside. With a ``barrier``, every batch waits there for the others (concurrency proof)."""

    def __init__(self, delay_s=0.0, fail_marker=None, gate: threading.Event | None = None,
                 barrier: threading.Barrier | None = None):
        self.delay_s = delay_s
        self.fail_marker = fail_marker
        self.gate = gate
        self.barrier = barrier
        self.entered = threading.Event()
        self.batches: list[tuple[int, np.ndarray]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, replica, inputs):
        x = inputs["x"]
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.batches.append((replica, x.copy()))
        self.entered.set()
        try:
            if self.barrier is not None:
                self.barrier.wait(PATIENCE_S)
            if self.gate is not None:
                self.gate.wait(PATIENCE_S)
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.fail_marker is not None and (x == self.fail_marker).any():
                raise RuntimeError("boom")
            return {"y": x * 2, "idx": x[:, 0].astype(np.int64)}
        finally:
            with self.lock:
                self.active -= 1

    def sizes(self):
        return [len(b) for _, b in self.batches]

    def seen_values(self):
        return set(np.concatenate([b[:, 0] for _, b in self.batches]).tolist()) if self.batches else set()


def rows(start, n):
    return {"x": np.arange(start, start + n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)}


def run(coro):
    return asyncio.run(coro)


async def turns_until(predicate, what, turns=10_000):
    """Let the event loop run, one turn at a time, until ``predicate()`` holds (a bounded number of turns)."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the batcher never reached: {what}")


async def until_entered(rec: Recorder):
    """Wait (off the event loop, so the batcher keeps running) until a batch is inside ``rec``."""
    assert await asyncio.to_thread(rec.entered.wait, PATIENCE_S), "no batch reached run_batch"


def test_single_request_gets_its_own_rows_back():
    async def main():
        b = DynamicBatcher(Recorder(), max_batch_size=8)
        await b.start()
        out = await b.submit(rows(5, 3))
        await b.stop()
        return out

    out = run(main())
    np.testing.assert_array_equal(out["y"], rows(5, 3)["x"] * 2)
    np.testing.assert_array_equal(out["idx"], [5, 6, 7])


def test_low_load_dispatches_immediately_without_waiting_to_fill():
    """With no queue delay, submit() itself dispatches the batch: by the time the request is waiting for
    its answer, a batch of its one row is running and nothing is queued, though 63 more rows would fit."""
    states = {}

    async def main(delay_s):
        rec = Recorder(gate=threading.Event())
        b = DynamicBatcher(rec, max_batch_size=64, max_queue_delay_s=delay_s)
        await b.start()
        task = asyncio.ensure_future(b.submit(rows(0, 1)))
        await asyncio.sleep(0)          # one turn: submit() runs up to the point where it awaits its answer
        states[delay_s] = (b.running_batches, b.queued_rows)
        if delay_s:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await until_entered(rec)
            rec.gate.set()
            np.testing.assert_array_equal((await task)["idx"], [0])
            assert rec.sizes() == [1]
        await b.stop()

    run(main(0.0))
    run(main(3600.0))
    assert states[0.0] == (1, 0)
    # the same request under a one-hour queue delay is held to fill the batch: the check can fail
    assert states[3600.0] == (0, 1)


def test_requests_accumulate_while_replica_busy_and_rows_are_paired_correctly():
    rec = Recorder(delay_s=0.05)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=16)
        await b.start()
        rng = np.random.default_rng(0)
        sizes = rng.integers(1, 4, size=40)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * 10
        outs = await asyncio.gather(*(b.submit(rows(int(s), int(n))) for s, n in zip(starts, sizes, strict=True)))
        await b.stop()
        return starts, sizes, outs

    starts, sizes, outs = run(main())
    for s, n, out in zip(starts, sizes, outs, strict=True):
        np.testing.assert_array_equal(out["idx"], np.arange(s, s + n))
        np.testing.assert_array_equal(out["y"], rows(int(s), int(n))["x"] * 2)
    assert max(rec.sizes()) > 1, rec.sizes()
    assert all(sz <= 16 for sz in rec.sizes())
    assert sum(rec.sizes()) == sizes.sum()


def test_request_larger_than_max_batch_is_split_and_reassembled():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4)
        await b.start()
        out = await b.submit(rows(100, 10))
        await b.stop()
        return out

    out = run(main())
    np.testing.assert_array_equal(out["idx"], np.arange(100, 110))
    assert rec.sizes() == [4, 4, 2]


def test_queue_full_is_refused_with_retry_after():
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=2, max_queue_rows=4)
        await b.start()
        first = asyncio.ensure_future(b.submit(rows(0, 2)))      # runs, blocked on the gate
        await until_entered(rec)
        queued = [asyncio.ensure_future(b.submit(rows(10 * i, 2))) for i in (1, 2)]   # fill the 4 queued rows
        await turns_until(lambda: b.queued_rows == 4, "4 rows queued")
        with pytest.raises(QueueFull) as info:
            await b.submit(rows(99, 1))
        gate.set()
        outs = await asyncio.gather(first, *queued)
        await b.stop()
        return info.value, outs

    err, outs = run(main())
    # no batch has finished yet: no measured rate, so the estimate is its documented 1 s floor
    assert err.retry_after_s == 1.0
    assert "queue full: 4 rows waiting, limit 4" in str(err)
    assert [o["idx"].tolist() for o in outs] == [[0, 1], [10, 11], [20, 21]]     # the admitted ones all ran
    assert 99 not in rec.seen_values()


def test_retry_after_is_estimated_from_the_measured_service_rate():
    """One 2-row batch that takes at least 0.25 s measures a rate of at most 8 rows/s, so 16 queued rows
    need at least 2 s: Retry-After >= 2. A slower machine only makes the estimate larger."""
    rec = Recorder(delay_s=0.25)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=2, max_queue_rows=16)
        await b.start()
        await b.submit(rows(0, 2))                               # measured: >= 0.25 s for 2 rows
        rec.delay_s, rec.gate = 0.0, threading.Event()
        rec.entered.clear()
        held = asyncio.ensure_future(b.submit(rows(10, 2)))
        await until_entered(rec)
        queued = [asyncio.ensure_future(b.submit(rows(100 + 10 * i, 2))) for i in range(8)]
        await turns_until(lambda: b.queued_rows == 16, "16 rows queued")
        with pytest.raises(QueueFull) as info:
            await b.submit(rows(99, 1))
        rec.gate.set()
        await asyncio.gather(held, *queued)
        await b.stop()
        return info.value

    err = run(main())
    assert err.retry_after_s >= 2 and err.retry_after_s == int(err.retry_after_s), err.retry_after_s
    assert f"retry in {err.retry_after_s:.0f} s" in str(err)


def test_expired_request_gets_deadline_error_and_is_never_computed():
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=2)
        await b.start()
        first = asyncio.ensure_future(b.submit(rows(0, 1)))
        await until_entered(rec)                                  # the replica is busy until the gate opens
        with pytest.raises(DeadlineExceeded):
            await b.submit(rows(500, 1), deadline=time.monotonic() + 0.05)
        gate.set()
        await first
        after = await b.submit(rows(7, 1))
        await b.stop()
        return after

    after = run(main())
    np.testing.assert_array_equal(after["idx"], [7])
    assert 500 not in rec.seen_values()


def test_failing_batch_fails_only_its_requests_and_next_batch_runs():
    rec = Recorder(fail_marker=13)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4)
        await b.start()
        with pytest.raises(BatchFailed) as info:
            await b.submit(rows(13, 1))
        ok = await b.submit(rows(1, 2))
        await b.stop()
        return info.value, ok

    err, ok = run(main())
    assert "RuntimeError: boom" in str(err)
    np.testing.assert_array_equal(ok["idx"], [1, 2])


def test_queue_delay_holds_a_free_replica_to_fill_the_batch():
    """A one-hour queue delay: nothing runs until the batch is full, then it runs at once (no timer)."""
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4, max_queue_delay_s=3600)
        await b.start()
        tasks = [asyncio.ensure_future(b.submit(rows(i, 1))) for i in range(3)]
        await turns_until(lambda: b.queued_rows == 3, "3 rows queued")
        held = (b.running_batches, len(rec.batches))
        tasks.append(asyncio.ensure_future(b.submit(rows(3, 1))))
        outs = await asyncio.gather(*tasks)
        await b.stop()
        return held, outs

    held, outs = run(main())
    assert held == (0, 0), "a free replica ran a partial batch despite the queue delay"
    assert rec.sizes() == [4]
    assert [int(o["idx"][0]) for o in outs] == [0, 1, 2, 3]


def test_queue_delay_timer_dispatches_a_partial_batch():
    """A lone request under a short queue delay is not held forever: the timer dispatches it alone."""
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_size=4, max_queue_delay_s=0.05)
        await b.start()
        out = await b.submit(rows(5, 1))
        await b.stop()
        return out

    np.testing.assert_array_equal(run(main())["idx"], [5])
    assert rec.sizes() == [1]


def test_replicas_run_batches_concurrently():
    # every batch waits at a 2-party barrier: it passes only if another batch runs at the same time
    rec = Recorder(barrier=threading.Barrier(2))

    async def main():
        b = DynamicBatcher(rec, replicas=2, max_batch_size=1)
        await b.start()
        await asyncio.gather(*(b.submit(rows(i, 1)) for i in range(4)))
        await b.stop()

    run(main())
    assert rec.max_active == 2
    assert {r for r, _ in rec.batches} == {0, 1}


def test_stop_drains_queued_work_then_refuses_new_requests():
    rec = Recorder(delay_s=0.02)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=1)
        await b.start()
        tasks = [asyncio.ensure_future(b.submit(rows(i, 1))) for i in range(5)]
        await asyncio.sleep(0)
        await b.stop(timeout_s=5)
        outs = await asyncio.gather(*tasks)
        with pytest.raises(ShuttingDown):
            await b.submit(rows(0, 1))
        return outs

    outs = run(main())
    assert [int(o["idx"][0]) for o in outs] == [0, 1, 2, 3, 4]


def test_cancelled_request_is_not_computed():
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = DynamicBatcher(rec, max_batch_size=1)
        await b.start()
        first = asyncio.ensure_future(b.submit(rows(0, 1)))
        await until_entered(rec)
        doomed = asyncio.ensure_future(b.submit(rows(77, 1)))
        await turns_until(lambda: b.queued_rows == 1, "the second request queued")
        doomed.cancel()
        await turns_until(lambda: doomed.done(), "the cancellation delivered")
        assert b.queued_rows == 0
        gate.set()
        await first
        await b.submit(rows(8, 1))            # FIFO: had 77 still been queued, it would have run before this
        await b.stop()

    run(main())
    assert 77 not in rec.seen_values()


@pytest.mark.parametrize("kwargs, word", [({"max_batch_size": 0}, "max_batch_size"),
                                          ({"replicas": 0}, "replicas"),
                                          ({"max_queue_delay_s": -1}, "max_queue_delay_s")])
def test_bad_arguments_are_rejected(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DynamicBatcher(Recorder(), **kwargs)


def test_mismatched_or_empty_inputs_are_rejected():
    async def main():
        b = DynamicBatcher(Recorder())
        await b.start()
        with pytest.raises(ValueError, match="same number of rows"):
            await b.submit({"x": np.zeros((2, 3)), "z": np.zeros((3, 3))})
        with pytest.raises(ValueError, match="empty batch"):
            await b.submit({"x": np.zeros((0, 3))})
        await b.stop()

    run(main())


def test_batcher_module_imports_without_tensorflow():
    code = ("import sys, service.batcher, service.metrics, service.validation, service.manager, service.http; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'layers', 'model_zoo')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

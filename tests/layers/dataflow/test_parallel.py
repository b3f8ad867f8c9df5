"""MultiProcessRunner / MultiProcessRunnerZMQ: real worker processes, every datapoint delivered, worker
errors raised in the consumer, and no process left behind."""
import itertools
import multiprocessing as mp
import os
import select
import signal
import threading

import numpy as np
import pytest

from layers.dataflow import (
    AugmentImageComponent,
    DataFlowTerminated,
    DataFlowWorkerError,
    DataFromGenerator,
    DataFromList,
    MapData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    fix_rng_seed,
    imgaug,
)


def _ints(n):
    return DataFromList([[k] for k in range(n)], shuffle=False)


def _with_pid(ds):
    return MapData(ds, lambda dp: [dp[0], os.getpid()])


def _exited(pid, timeout_s=60):
    """Whether process ``pid`` (not necessarily our child) has exited, waiting up to ``timeout_s``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)  # a pidfd turns readable when the process exits
        return bool(readable)
    finally:
        os.close(fd)


def _assert_reaped(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not set(pids) & {p.pid for p in mp.active_children()}


@pytest.fixture
def runners():
    made = []
    yield made.append
    for r in made:
        r.close()


@pytest.mark.parametrize("cls", [MultiProcessRunner, MultiProcessRunnerZMQ])
def test_one_worker_yields_the_dataflow_in_order_every_epoch(cls, runners):
    runner = cls(_with_pid(_ints(7)), 3, 1) if cls is MultiProcessRunner else cls(_with_pid(_ints(7)), 1, hwm=3)
    runners(runner)
    runner.reset_state()
    assert len(runner) == 7
    epochs = [list(runner) for _ in range(2)]
    assert [[dp[0] for dp in e] for e in epochs] == [list(range(7))] * 2
    assert {dp[1] for e in epochs for dp in e} == set(runner.worker_pids)
    assert os.getpid() not in runner.worker_pids


def test_every_worker_runs_the_whole_dataflow_independently(runners):
    runner = MultiProcessRunnerZMQ(_with_pid(_ints(5)), num_proc=2, hwm=4)
    runners(runner)
    runner.reset_state()
    seen = {}
    stream = iter(itertools.chain.from_iterable(runner for _ in itertools.count()))
    for _ in range(5000):  # until both workers have delivered something
        value, pid = next(stream)
        seen.setdefault(pid, []).append(value)
        if len(seen) == 2 and min(len(v) for v in seen.values()) >= 6:
            break
    assert set(seen) == set(runner.worker_pids)
    for values in seen.values():  # each worker's own stream is the dataflow repeated: 0 1 2 3 4 0 1 ...
        assert values == [k % 5 for k in range(len(values))]


def test_a_worker_exception_reaches_the_consumer_naming_the_error(runners):
    def gen():
        yield [0]
        yield [1]
        raise ValueError("bad record 2")

    runner = MultiProcessRunner(DataFromGenerator(gen), num_prefetch=2, num_proc=2)
    runners(runner)
    runner.reset_state()
    pids = runner.worker_pids
    with pytest.raises(DataFlowWorkerError, match=r"worker \d \(pid \d+\) raised ValueError: bad record 2") as info:
        for _ in runner:
            pass
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.exc_type_name == "ValueError"
    assert "in gen" in info.value.remote_traceback
    _assert_reaped(pids)  # the failure shut every worker down


def test_a_datapoint_that_cannot_be_pickled_is_reported(runners):
    runner = MultiProcessRunnerZMQ(DataFromList([[lambda: 0]], shuffle=False), num_proc=1)
    runners(runner)
    runner.reset_state()
    with pytest.raises(DataFlowWorkerError, match="raised (PicklingError|AttributeError)"):
        list(runner)


def test_an_empty_dataflow_is_an_error_not_a_hang(runners):
    runner = MultiProcessRunnerZMQ(DataFromList([], shuffle=False), num_proc=1)
    runners(runner)
    runner.reset_state()
    with pytest.raises(DataFlowWorkerError, match="without producing a datapoint"):
        next(iter(runner))


def test_a_killed_worker_is_reported_with_its_exit_code(runners):
    runner = MultiProcessRunnerZMQ(DataFromGenerator(lambda: ([k] for k in itertools.count())), num_proc=1, hwm=2)
    runners(runner)
    runner.reset_state()
    assert next(iter(runner)) == [0]
    (pid,) = runner.worker_pids
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DataFlowWorkerError, match=r"exited unexpectedly \(exit code -9\)"):
        for _ in runner:
            pass
    _assert_reaped([pid])


def test_close_terminates_and_reaps_every_worker(runners):
    runner = MultiProcessRunner(DataFromGenerator(lambda: ([k] for k in itertools.count())), 4, 3)
    runners(runner)
    runner.reset_state()
    assert next(iter(runner)) == [0]
    pids = runner.worker_pids
    assert len(pids) == 3
    runner.close()
    _assert_reaped(pids)
    with pytest.raises(DataFlowTerminated):
        next(iter(runner))


def _trainer_that_dies(conn):
    """A consumer process that starts a runner and then dies without any clean-up."""
    runner = MultiProcessRunnerZMQ(DataFromGenerator(lambda: ([k] for k in itertools.count())), num_proc=2)
    runner.reset_state()
    next(iter(runner))
    conn.send(runner.worker_pids)
    os._exit(0)


def test_workers_exit_when_their_consumer_dies_without_cleaning_up():
    reader, writer = mp.get_context("fork").Pipe(duplex=False)
    trainer = mp.get_context("fork").Process(target=_trainer_that_dies, args=(writer,))
    trainer.start()
    pids = reader.recv()
    trainer.join()
    assert len(pids) == 2
    assert all(_exited(pid) for pid in pids)


def test_spawned_workers_run_a_picklable_dataflow(runners):
    runner = MultiProcessRunnerZMQ(_ints(4), num_proc=1, start_method="spawn")
    runners(runner)
    runner.reset_state()
    assert list(runner) == [[0], [1], [2], [3]]


def test_spawn_refuses_an_unpicklable_dataflow_with_a_clear_error(runners):
    runner = MultiProcessRunnerZMQ(MapData(_ints(2), lambda dp: dp), start_method="spawn")
    runners(runner)
    with pytest.raises(TypeError, match="start_method='spawn' has to pickle the dataflow"):
        runner.reset_state()


def test_reset_state_is_required_once(runners):
    runner = MultiProcessRunnerZMQ(_ints(2))
    runners(runner)
    with pytest.raises(RuntimeError, match="call reset_state"):
        next(iter(runner))
    runner.reset_state()
    with pytest.raises(RuntimeError, match="called twice"):
        runner.reset_state()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_proc must be a positive int"):
        MultiProcessRunnerZMQ(_ints(2), num_proc=0)
    with pytest.raises(ValueError, match="prefetch size must be a positive int"):
        MultiProcessRunner(_ints(2), 0, 1)
    with pytest.raises(ValueError, match="start_method"):
        MultiProcessRunner(_ints(2), 1, 1, start_method="thread")


def test_close_from_another_thread_ends_a_blocked_consumer_with_dataflowterminated():
    def never_yields():
        threading.Event().wait()  # blocks the worker forever
        yield [0]

    runner = MultiProcessRunnerZMQ(DataFromGenerator(never_yields), num_proc=1)
    runner.reset_state()
    outcome = []

    def consume():
        try:
            next(iter(runner))
        except BaseException as e:  # DataFlowTerminated is a BaseException, as in tensorpack
            outcome.append(e)

    consumer = threading.Thread(target=consume)
    consumer.start()
    pids = runner.worker_pids
    runner.close()
    consumer.join(timeout=60)
    assert not consumer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DataFlowTerminated)
    _assert_reaped(pids)


def _brightness_deltas_per_worker(runner):
    """First brightness delta seen from each worker (the image is all 100s, so delta = pixel - 100)."""
    runner.reset_state()
    first = {}
    stream = iter(itertools.chain.from_iterable(runner for _ in itertools.count()))
    for _ in range(5000):
        img, pid = next(stream)
        first.setdefault(pid, float(img[0, 0]) - 100)
        if len(first) == 2:
            return first
    raise AssertionError(f"only {len(first)} worker(s) delivered data")


def _augmented_runner():
    ds = AugmentImageComponent(DataFromList([[np.full((1, 1), 100.0, np.float32)]], shuffle=False),
                               [imgaug.Brightness(50)])
    return MultiProcessRunnerZMQ(MapData(ds, lambda dp: [dp[0], os.getpid()]), num_proc=2, hwm=2)


def test_each_worker_reseeds_its_augmentors(runners):
    runner = _augmented_runner()
    runners(runner)
    deltas = _brightness_deltas_per_worker(runner)
    assert len(set(deltas.values())) == 2


def test_fix_rng_seed_gives_every_worker_the_same_stream(runners):
    runner = _augmented_runner()
    runners(runner)
    fix_rng_seed(4)
    try:
        deltas = _brightness_deltas_per_worker(runner)
    finally:
        fix_rng_seed(None)
    expected = float(np.float32(np.random.RandomState(4).uniform(-50, 50)))
    assert list(deltas.values()) == pytest.approx([expected, expected], abs=1e-4)

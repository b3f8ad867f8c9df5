"""Run a dataflow in worker processes (tensorpack's ``MultiProcessRunner`` and ``MultiProcessRunnerZMQ``).

Semantics, as in tensorpack: ``reset_state()`` starts ``num_proc`` processes; each one calls
``ds.reset_state()`` (so each seeds its own random generator) and then iterates ``ds`` over and over,
independently of the others. With ``num_proc=1`` the runner yields exactly ``ds``'s stream; with more,
the streams interleave (duplicates and reordering included: meant for i.i.d. training data). One pass of
the runner is ``len(ds)`` datapoints when ``ds`` has a length, endless otherwise.

Differences from tensorpack, on purpose:

* **Transport.** Both classes send datapoints through one ``multiprocessing`` pipe per worker, with a
  shared semaphore bounding how many datapoints wait in flight (``num_prefetch`` / ``hwm``), instead
  of tensorpack's ``multiprocessing.Queue`` and ZeroMQ sockets. ``MultiProcessRunnerZMQ`` keeps
  tensorpack's signature and behaviour (fork in ``reset_state``, ``hwm`` bounds the prefetch) but not
  its ZeroMQ transport: pyzmq would be one more native dependency, imported by every training script,
  for a throughput gain that only shows with many processes and large datapoints; on the 2-4 cores
  this project targets the pickling cost dominates either way. ``hwm`` bounds the total number of
  datapoints in flight, where ZeroMQ's high-water mark bounds each socket.
* **Failures reach the consumer.** An exception inside a worker (including one from pickling a
  datapoint) is sent back and raised in the consuming process as :class:`DataFlowWorkerError`, naming
  the worker, its pid, the error and its traceback, with the original exception chained as
  ``__cause__`` when it can be unpickled; a worker that dies without a report (killed, ``os._exit``)
  raises the same error with its exit code. All workers are then shut down. Tensorpack's
  queue-based runner would block forever instead.
* **Shutdown.** ``close()`` (also run by ``__del__`` and at interpreter exit) terminates and reaps
  every worker. On Linux each worker also asks the kernel (``PR_SET_PDEATHSIG``) to terminate it if
  the thread that started it dies, so a crashed or killed trainer leaves no orphans; that protection
  is on only when ``reset_state()`` runs in the main thread, because the kernel ties it to the
  starting *thread*.

Start method and TensorFlow: workers are forked by default (``start_method="fork"``), as in tensorpack,
because tensorpack dataflows are full of lambdas and closures that cannot be pickled. A forked worker
starts with a copy of the parent's memory, which may include a ``tf.Session``, but only the forking
thread survives (none of TensorFlow's thread pools), the worker only runs the dataflow's Python/NumPy
code, and it leaves through ``os._exit`` so no TensorFlow destructor runs in it. Do not call TensorFlow
inside a dataflow that runs in workers; if you must, or want workers that share nothing with the parent,
pass ``start_method="spawn"``: each worker is then a fresh interpreter (it imports this package, and
TensorFlow with it, ~4 s) and ``ds`` must be picklable.
"""
import atexit
import contextlib
import itertools
import multiprocessing as mp
import multiprocessing.connection
import multiprocessing.util  # noqa: F401  (registers its exit hook before ours, so ours runs first)
import os
import pickle
import signal
import sys
import threading
import traceback
import warnings
import weakref

from .base import DataFlowReentrantGuard, DataFlowTerminated, ProxyDataFlow

__all__ = ["MultiProcessRunner", "MultiProcessRunnerZMQ", "DataFlowWorkerError",
           "PrefetchData", "MultiProcessPrefetchData", "PrefetchDataZMQ"]

_DATA, _ERROR = 0, 1
_START_METHODS = ("fork", "spawn", "forkserver")
_PR_SET_PDEATHSIG = 1
_LIVE_POOLS = weakref.WeakSet()


class DataFlowWorkerError(RuntimeError):
    """An exception raised inside (or the death of) a dataflow worker process.

    Attributes: ``worker_index``, ``pid``, ``exc_type_name`` (the worker's exception class name, or
    ``None`` when the worker died without reporting) and ``remote_traceback`` (its formatted traceback).
    """

    def __init__(self, message, worker_index, pid, exc_type_name=None, remote_traceback=None):
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.exc_type_name = exc_type_name
        self.remote_traceback = remote_traceback


def _set_parent_death_signal(parent_pid):
    """Linux only: have the kernel send SIGTERM to this worker when the thread that forked it dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # only workers need it

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _pickled_or_none(exc):
    try:
        return pickle.dumps(exc)
    except Exception:  # an exception holding unpicklable state: the text report still goes through
        return None


def _worker_main(ds, conn, slots, parent_pid, death_signal):
    """Body of one worker: reset ``ds``, then send its datapoints forever, or one error report."""
    # Ctrl-C reaches the whole process group; the consumer handles it and shuts the workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if death_signal:
        _set_parent_death_signal(parent_pid)
    try:
        ds.reset_state()
        while True:
            produced = False
            for dp in ds:
                produced = True
                slots.acquire()
                conn.send((_DATA, dp))
            if not produced:
                raise RuntimeError(f"{type(ds).__name__} finished a whole pass without producing a datapoint")
    except Exception as e:
        report = (type(e).__name__, str(e), traceback.format_exc(), _pickled_or_none(e))
        with contextlib.suppress(OSError):  # the consumer may be gone already
            conn.send((_ERROR, report))
    finally:
        conn.close()
        # runners this worker started itself (nested runners) go down with it
        _close_live_pools()


@contextlib.contextmanager
def _fork_warning_silenced():
    # Python >= 3.12 warns when a multi-threaded process forks, because a child that touches a lock held
    # by another thread can deadlock. Our workers only run the dataflow (see the module docstring), so
    # the warning does not apply to them; it is silenced for this one call only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
        yield


class _Worker:
    def __init__(self, index, proc, conn):
        self.index, self.proc, self.conn = index, proc, conn


class _WorkerPool:
    """``num_proc`` processes running ``ds``, each with its own pipe, sharing ``capacity`` send slots."""

    def __init__(self, ds, num_proc, capacity, owner, start_method):
        self._ds = ds
        self._num_proc = num_proc
        self._owner = owner
        self._ctx = mp.get_context(start_method)
        self._start_method = start_method
        self._slots = self._ctx.Semaphore(capacity)
        self._workers = []
        self._closed = False
        self._creator_pid = os.getpid()
        self._rotation = itertools.cycle(range(num_proc))

    @property
    def pids(self):
        return [w.proc.pid for w in self._workers]

    def start(self):
        parent_pid = os.getpid()
        death_signal = threading.current_thread() is threading.main_thread()
        _LIVE_POOLS.add(self)
        for index in range(self._num_proc):
            reader, writer = self._ctx.Pipe(duplex=False)
            proc = self._ctx.Process(target=_worker_main, name=f"{self._owner}-worker-{index}",
                                     args=(self._ds, writer, self._slots, parent_pid, death_signal))
            try:
                with _fork_warning_silenced():
                    proc.start()
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                reader.close()
                writer.close()
                self.close()
                raise TypeError(
                    f"{self._owner}: start_method={self._start_method!r} has to pickle the dataflow to send "
                    f"it to the workers, and could not: {e}. Lambdas and locally defined functions do not "
                    "pickle; use start_method='fork' (the default) or module-level functions") from e
            # Close our copy of the write end, so the reader sees EOF when the worker dies.
            writer.close()
            self._workers.append(_Worker(index, proc, reader))

    def get(self):
        """The next datapoint from any worker; raises ``DataFlowWorkerError`` if a worker failed."""
        while True:
            if self._closed:
                raise DataFlowTerminated(f"{self._owner} was shut down (close() was called or a worker failed)")
            try:
                ready = mp.connection.wait([w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers])
            except (OSError, ValueError):  # a pipe closed under us by close() from another thread
                if self._closed:
                    continue
                raise
            start = next(self._rotation)  # rotate so that one fast worker cannot starve the others
            for w in self._workers[start:] + self._workers[:start]:
                if w.conn not in ready:
                    continue
                try:
                    kind, payload = w.conn.recv()
                except (EOFError, OSError):
                    self._fail(w, None)
                if kind == _DATA:
                    self._slots.release()
                    return payload
                self._fail(w, payload)
            for w in self._workers:
                if w.proc.sentinel in ready:
                    try:
                        pending = w.conn.poll()
                    except (OSError, ValueError):  # closed by close() from another thread: _fail says so
                        pending = False
                    if not pending:
                        self._fail(w, None)

    def _fail(self, worker, report):
        if self._closed:  # close() from another thread ended the worker: not a worker failure
            raise DataFlowTerminated(f"{self._owner} was shut down while waiting for data")
        pid = worker.proc.pid
        self.close()
        if report is None:
            raise DataFlowWorkerError(
                f"{self._owner} worker {worker.index} (pid {pid}) exited unexpectedly (exit code "
                f"{worker.proc.exitcode}) without reporting an error; all workers were shut down",
                worker.index, pid)
        name, text, remote_tb, pickled = report
        cause = None
        if pickled is not None:
            with contextlib.suppress(Exception):
                cause = pickle.loads(pickled)
        raise DataFlowWorkerError(
            f"{self._owner} worker {worker.index} (pid {pid}) raised {name}: {text}\n"
            f"(all workers were shut down)\nWorker traceback:\n{remote_tb}",
            worker.index, pid, name, remote_tb) from cause

    def close(self):
        """Terminate and reap every worker; safe to call twice, and a no-op in other processes."""
        if self._closed or os.getpid() != self._creator_pid:
            return
        self._closed = True
        _LIVE_POOLS.discard(self)
        for w in self._workers:
            if w.proc.exitcode is None:
                w.proc.terminate()
        for w in self._workers:
            w.proc.join(timeout=10)
            if w.proc.exitcode is None:  # ignored SIGTERM: no more asking
                w.proc.kill()
                w.proc.join()
            w.conn.close()


@atexit.register
def _close_live_pools():
    for pool in list(_LIVE_POOLS):
        pool.close()


class _RunnerBase(ProxyDataFlow):
    def __init__(self, ds, num_proc, capacity, start_method):
        super().__init__(ds)
        name = type(self).__name__
        for arg, value in (("num_proc", num_proc), ("prefetch size", capacity)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if start_method not in _START_METHODS:
            raise ValueError(f"{name}: start_method must be one of {_START_METHODS}, got {start_method!r}")
        self.num_proc = num_proc
        self._capacity = capacity
        self._start_method = start_method
        try:
            self._size = len(ds)
        except NotImplementedError:
            self._size = -1
        self._pool = None
        self._guard = DataFlowReentrantGuard()

    def reset_state(self):
        """Start the worker processes (each resets its own copy of ``ds``). Call it once."""
        if self._pool is not None:
            raise RuntimeError(f"{type(self).__name__}.reset_state() was called twice; it starts the worker "
                               "processes and must run once")
        self._pool = _WorkerPool(self.ds, self.num_proc, self._capacity, type(self).__name__, self._start_method)
        self._pool.start()

    def __iter__(self):
        if self._pool is None:
            raise RuntimeError(f"{type(self).__name__}: call reset_state() before iterating "
                               "(it starts the worker processes)")
        with self._guard:
            for k in itertools.count():
                if 0 < self._size <= k:
                    return
                yield self._pool.get()

    @property
    def worker_pids(self):
        """Process ids of the workers (empty before ``reset_state()``)."""
        return [] if self._pool is None else self._pool.pids

    def close(self):
        """Terminate and reap the worker processes. Iterating afterwards raises ``DataFlowTerminated``."""
        if self._pool is not None:
            self._pool.close()

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()


class MultiProcessRunner(_RunnerBase):
    """Run ``ds`` in ``num_proc`` worker processes, keeping up to ``num_prefetch`` datapoints ready.

    Args:
        ds: the dataflow; every worker iterates its own copy of it, endlessly.
        num_prefetch: how many datapoints may wait, produced but not yet consumed (> 0).
        num_proc: number of worker processes (> 0).
        start_method: ``"fork"`` (default, tensorpack's behaviour), ``"spawn"`` or ``"forkserver"``;
            see the module docstring.

    Workers start in ``reset_state()``; ``close()`` stops them. See the module docstring for how this
    differs from tensorpack.
    """

    def __init__(self, ds, num_prefetch, num_proc, *, start_method="fork"):
        super().__init__(ds, num_proc, num_prefetch, start_method)
        self.num_prefetch = num_prefetch


class MultiProcessRunnerZMQ(_RunnerBase):
    """tensorpack's ``MultiProcessRunnerZMQ`` interface: ``ds`` in ``num_proc`` workers, ``hwm`` in flight.

    Args:
        ds: the dataflow; every worker iterates its own copy of it, endlessly.
        num_proc: number of worker processes (default 1).
        hwm: how many datapoints may wait, produced but not yet consumed (default 50, tensorpack's).
        start_method: as for :class:`MultiProcessRunner`.

    The transport is a pipe per worker, not ZeroMQ; the module docstring says why.
    """

    def __init__(self, ds, num_proc=1, hwm=50, *, start_method="fork"):
        super().__init__(ds, num_proc, hwm, start_method)
        self.hwm = hwm


# tensorpack's older names
PrefetchData = MultiProcessRunner
MultiProcessPrefetchData = MultiProcessRunner
PrefetchDataZMQ = MultiProcessRunnerZMQ

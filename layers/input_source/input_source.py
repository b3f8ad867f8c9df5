"""Input sources: how a trainer gets its input tensors (tensorpack's ``InputSource``).

* :class:`FeedInput`: placeholders fed from a DataFlow with every step (one tower only).
* :class:`QueueInput`: a background thread iterates the DataFlow and enqueues datapoints into a
  ``tf.compat.v1.FIFOQueue`` (capacity 50); each tower dequeues its own batch. Its fill level is
  the stat ``QueueInput/queue_size`` (an EMA, decay 0.5). After training the queue is closed and
  the thread joined; an exception in the DataFlow stops training and is re-raised by the trainer.
* :class:`DummyConstantInput`, :class:`TensorInput`, :class:`PlaceholderInput`.

A DataFlow is anything with tensorpack's interface: ``reset_state()``, ``__iter__`` yielding
datapoints (lists of arrays in input-signature order, or dicts by input name) and, for
``len()``-based sizes, ``__len__``.
"""
from __future__ import annotations

import threading

from .._compat import tf, tfv1
from ..callbacks.base import Callback, CallbackFactory
from ..callbacks.concurrency import StartProcOrThread
from ..callbacks.graph import RunOp
from ..tfutils.summary import add_moving_summary
from ..tower import get_current_tower_context
from ..utils import logger

__all__ = ["InputSource", "PlaceholderInput", "FeedInput", "FeedfreeInput", "QueueInput", "TensorInput",
           "DummyConstantInput", "is_dataflow", "build_or_reuse_placeholder"]


def is_dataflow(obj) -> bool:
    """True for objects with the DataFlow interface (``reset_state`` and ``__iter__``)."""
    return callable(getattr(obj, "reset_state", None)) and callable(getattr(obj, "__iter__", None)) \
        and not isinstance(obj, InputSource)


def _check_dataflow(ds, who):
    if not is_dataflow(ds):
        raise TypeError(f"{who} takes a DataFlow (an object with reset_state() and __iter__), got {type(ds).__name__}")


def _repeat_forever(ds):
    # tensorpack's RepeatedData(ds, -1): iterate ds again and again.
    while True:
        n = 0
        for dp in ds:
            n += 1
            yield dp
        if n == 0:
            raise ValueError(f"DataFlow {ds!r} produced no datapoints in a whole pass")


def build_or_reuse_placeholder(spec):
    """The placeholder named ``spec.name`` in the default graph, created at the root name scope
    if there is none (an existing one must be a compatible placeholder)."""
    g = tfv1.get_default_graph()
    try:
        t = g.get_tensor_by_name(spec.name + ":0")
    except KeyError:
        t = None
    if t is not None:
        if "Placeholder" not in t.op.type or not spec.is_compatible_with(t):
            raise ValueError(f"Tensor {t.name} exists but is not a placeholder compatible with {spec}")
        same_rank = t.shape.rank == spec.shape.rank
        if same_rank and (spec.shape.rank is None or t.shape.as_list() == spec.shape.as_list()):
            return t
    with g.name_scope(None):
        return tfv1.placeholder(spec.dtype, shape=spec.shape, name=spec.name)


def _make_feeds(placeholders, dp):
    if isinstance(dp, dict):
        return {p: dp[p.op.name] for p in placeholders}
    if isinstance(dp, (list, tuple)):
        if len(dp) != len(placeholders):
            raise ValueError(f"A datapoint has {len(dp)} components but the model has {len(placeholders)} inputs "
                             f"({[p.op.name for p in placeholders]})")
        return dict(zip(placeholders, dp, strict=True))
    raise TypeError(f"A datapoint must be a list/tuple or a dict, got {type(dp).__name__}")


class InputSource:
    """Base class. ``setup(input_signature)`` once, then ``get_input_tensors()`` per tower."""

    _setup_done = False
    _name_scope = None
    _callbacks = None

    def get_input_tensors(self):
        """The input tensors for one tower (new dequeue ops for queue-based sources)."""
        return self._get_input_tensors()

    def _get_input_tensors(self):
        raise NotImplementedError

    def setup(self, input_signature):
        """Build what this source needs for ``input_signature``; returns its callbacks."""
        if self._setup_done:
            raise RuntimeError(f"{type(self).__name__}.setup() was already called (an InputSource serves one trainer)")
        self._setup(list(input_signature))
        self._setup_done = True
        return self.get_callbacks()

    def _setup(self, input_signature):
        pass

    def setup_done(self):
        return self._setup_done

    def get_callbacks(self):
        """Callbacks that maintain this source (memoised; all run on every worker)."""
        if not self._setup_done:
            raise RuntimeError("get_callbacks() needs setup() first")
        if self._callbacks is None:
            ret = [CallbackFactory(before_train=lambda _: self.reset_state())] + self._get_callbacks()
            for r in ret:
                r.set_chief_only(False)
            self._callbacks = ret
        return self._callbacks

    def _get_callbacks(self):
        return []

    def reset_state(self):
        """Re-initialise (called by the trainer before training and by InferenceRunner every run)."""
        self._reset_state()

    def _reset_state(self):
        pass

    def size(self):
        """Datapoints (batches) per epoch; NotImplementedError when unknown."""
        return self._size()

    def _size(self):
        raise NotImplementedError()

    def cached_name_scope(self):
        """The same name scope (``<ClassName>/``) every time."""
        if self._name_scope:
            return tfv1.name_scope(self._name_scope)
        return _FirstNameScope(self)


class _FirstNameScope:
    def __init__(self, src):
        self._src = src
        self._cm = tfv1.name_scope(type(src).__name__)

    def __enter__(self):
        ns = self._cm.__enter__()
        self._src._name_scope = ns
        return ns

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


class PlaceholderInput(InputSource):
    """Plain placeholders named after the inputs."""

    def _setup(self, inputs):
        self._all_placehdrs = [build_or_reuse_placeholder(v) for v in inputs]

    def _get_input_tensors(self):
        return self._all_placehdrs


class _FeedCallback(Callback):
    def __init__(self, make_iter, placeholders):
        self._make_iter = make_iter
        self._itr = None
        self._placeholders = placeholders

    def _before_run(self, _):
        if self._itr is None:
            self._reset()
        feed = _make_feeds(self._placeholders, next(self._itr))
        return tfv1.train.SessionRunArgs(fetches=[], feed_dict=feed)

    def _reset(self):
        self._itr = self._make_iter()


class FeedInput(InputSource):
    """Feed datapoints of a DataFlow into placeholders, one per step.

    Args:
        ds: the DataFlow (``len(ds)`` is the size).
        infinite: True (default, training): restart ``ds`` when it ends. False (inference): raise
            StopIteration at its end.

    Every call of ``get_input_tensors`` returns the same placeholders, so it serves one tower only.
    """

    def __init__(self, ds, infinite=True):
        _check_dataflow(ds, "FeedInput")
        self.ds = ds
        self._infinite = infinite

    def _size(self):
        return len(self.ds)

    def _setup(self, inputs):
        self._all_placehdrs = [build_or_reuse_placeholder(v) for v in inputs]
        make = (lambda: _repeat_forever(self.ds)) if self._infinite else (lambda: iter(self.ds))
        self._cb = _FeedCallback(make, self._all_placehdrs)

    def _get_input_tensors(self):
        return self._all_placehdrs

    def _reset_state(self):
        self._cb._reset()

    def _get_callbacks(self):
        return [self._cb, CallbackFactory(setup_graph=lambda _: self.ds.reset_state())]


class FeedfreeInput(InputSource):
    """Base of sources whose tensors need no feed (queues, constants, tensors)."""


class _EnqueueThread(threading.Thread):
    """Iterates the DataFlow and runs the enqueue op until stopped or the queue is closed."""

    def __init__(self, queue, ds, placeholders):
        super().__init__(name=f"EnqueueThread {queue.name}", daemon=True)
        self.dataflow = ds
        self.placehdrs = placeholders
        self.op = queue.enqueue(placeholders)
        self.close_op = queue.close(cancel_pending_enqueues=True)
        self._stopped = threading.Event()
        self._sess = None
        self.error = None

    def start(self):
        self._sess = tfv1.get_default_session()
        if self._sess is None:
            raise RuntimeError("QueueInput's thread must be started under a default session")
        super().start()

    def run(self):
        try:
            for dp in _repeat_forever(self.dataflow):
                if self._stopped.is_set():
                    break
                self._sess.run(self.op, feed_dict=_make_feeds(self.placehdrs, dp))
        except (tf.errors.CancelledError, tf.errors.OutOfRangeError):
            pass            # the queue was closed: training is over
        except Exception as e:
            if not self._stopped.is_set():
                self.error = e
                logger.exception("[EnqueueThread] Exception in thread %s:", self.name)
        finally:
            self._close()
            logger.info("[EnqueueThread] Thread %s Exited.", self.name)

    def _close(self):
        try:
            self._sess.run(self.close_op)   # wakes a dequeue waiting on an empty queue (OutOfRangeError)
        except Exception:   # the session may already be closed; nothing left to wake
            pass

    def stop(self):
        """Stop enqueueing: close the queue (cancelling a blocked enqueue) so the thread ends."""
        self._stopped.set()
        self._close()


class QueueInput(FeedfreeInput):
    """Prefetch datapoints from a DataFlow into a TF queue in a background thread.

    Args:
        ds: the DataFlow (repeated forever; ``len(ds)`` is the size).
        queue: a ``tf.compat.v1.QueueBase`` matching the input dtypes; default a ``FIFOQueue`` of
            capacity 50 named ``QueueInput/input_queue``.
    """

    def __init__(self, ds, queue=None):
        _check_dataflow(ds, "QueueInput")
        self.queue = queue
        self.ds = ds
        self.thread = None

    def _size(self):
        return len(self.ds)

    def _setup(self, inputs):
        self._input_placehdrs = [build_or_reuse_placeholder(v) for v in inputs]
        if not self._input_placehdrs:
            raise ValueError("QueueInput needs a model with inputs")
        with self.cached_name_scope():
            if self.queue is None:
                self.queue = tfv1.FIFOQueue(50, [x.dtype for x in self._input_placehdrs], name="input_queue")
            logger.info("Setting up the queue '%s' for CPU prefetching ...", self.queue.name)
            self.thread = _EnqueueThread(self.queue, self.ds, self._input_placehdrs)

    def _queue_size_callback(self):
        with self.cached_name_scope():
            size = tf.cast(self.queue.size(), tf.float32, name="queue_size")
        ema = add_moving_summary(size, collection=None, decay=0.5)[0]
        cb = RunOp(lambda: ema.op, run_before=False, run_as_trigger=False, run_step=True)
        cb.name_scope = "InputSource/EMA"
        return cb

    def _get_callbacks(self):
        return [StartProcOrThread(self.thread), self._queue_size_callback(),
                CallbackFactory(setup_graph=lambda _: self.ds.reset_state())]

    def _get_input_tensors(self):
        with tf.device("/cpu:0"), self.cached_name_scope():
            ret = self.queue.dequeue(name="input_deque")
            if isinstance(ret, tf.Tensor):
                ret = [ret]
            for qv, v in zip(ret, self._input_placehdrs, strict=True):
                qv.set_shape(v.shape)
            return ret

    @property
    def error(self):
        """The exception that stopped the prefetch thread, or None."""
        return self.thread.error if self.thread is not None else None


class TensorInput(FeedfreeInput):
    """Inputs from a function returning tensors (e.g. a tf.data pipeline), called once per tower.

    Args:
        get_tensor_fn: returns a list of tensors in input-signature order.
        size: batches per epoch, or None (unknown).
    """

    def __init__(self, get_tensor_fn, size=None):
        if not callable(get_tensor_fn):
            raise TypeError(f"TensorInput: get_tensor_fn must be callable, got {get_tensor_fn!r}")
        if size is not None and int(size) <= 0:
            raise ValueError(f"TensorInput: size must be positive or None, got {size!r}")
        self.get_tensor_fn = get_tensor_fn
        self._fixed_size = None if size is None else int(size)

    def _setup(self, input_signature):
        self._spec = input_signature

    def _size(self):
        if self._fixed_size is None:
            raise NotImplementedError("size of TensorInput is undefined!")
        return self._fixed_size

    def _get_input_tensors(self):
        with self.cached_name_scope():
            ret = self.get_tensor_fn()
        if not isinstance(ret, (list, tuple)) or len(ret) != len(self._spec):
            raise ValueError(f"TensorInput: get_tensor_fn must return a list of {len(self._spec)} tensors, got {ret!r}")
        return list(ret)


class DummyConstantInput(TensorInput):
    """Constant zero inputs of the given fully-defined shapes (to time a model without input cost)."""

    def __init__(self, shapes):
        self.shapes = [list(s) for s in shapes]
        logger.warning("Using dummy input for debug!")

        def fn():
            ctx = get_current_tower_context()
            if len(self.shapes) != len(self._spec):
                raise ValueError(f"DummyConstantInput: {len(self.shapes)} shapes for {len(self._spec)} inputs")
            index = getattr(ctx, "index", 0)
            return [tf.zeros(shape, dtype=p.dtype, name=f"dummy-{p.name}-{index}")
                    for shape, p in zip(self.shapes, self._spec, strict=True)]
        super().__init__(fn)

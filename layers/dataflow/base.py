"""The DataFlow protocol (tensorpack's ``tensorpack.dataflow.base``).

A dataflow is an iterable of datapoints; a datapoint is a list (or dict) of components. The contract,
as in tensorpack:

* ``reset_state()`` is called once, in the process that iterates, before the first ``__iter__``. It is
  where random generators are seeded and worker processes are started.
* ``__iter__()`` may be finite (it can then be called again for the next epoch) or infinite.
* ``__len__()`` is optional and only a hint; it raises ``NotImplementedError`` when unknown.

Old tensorpack code that defines ``get_data()``/``size()`` instead of ``__iter__``/``__len__`` keeps
working: the metaclass maps the old names onto the new ones.
"""
import threading
from abc import ABCMeta, abstractmethod

from .rng import get_rng

__all__ = ["DataFlow", "RNGDataFlow", "ProxyDataFlow", "DataFlowTerminated", "DataFlowReentrantGuard",
           "UnknownLengthError"]


class UnknownLengthError(NotImplementedError, TypeError):
    """``len()`` of a dataflow whose length is unknown.

    A ``NotImplementedError``, which is what tensorpack code catches (``try: len(ds) except
    NotImplementedError``), and also a ``TypeError``, so that ``list(ds)`` (which asks ``len()`` only as a
    size hint and ignores a ``TypeError``) still works.
    """


class DataFlowTerminated(BaseException):
    """Raised when a dataflow can no longer produce data (its worker processes were shut down).

    A ``BaseException`` as in tensorpack, so that a generic ``except Exception`` in a training loop does
    not swallow it.
    """


class DataFlowReentrantGuard:
    """Context manager that refuses a second concurrent ``__iter__`` on a stateful dataflow."""

    def __init__(self):
        self._lock = threading.Lock()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("This DataFlow is not reentrant: another iterator over it is still running; "
                               "create a second instance to iterate in two places")
        return self

    def __exit__(self, exc_type, exc, tb):
        self._lock.release()
        return False


class _DataFlowMeta(ABCMeta):
    """Maps tensorpack's old ``get_data``/``size`` methods onto ``__iter__``/``__len__``."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        for new, old in (("__iter__", "get_data"), ("__len__", "size")):
            if new not in namespace and old in namespace:
                namespace[new] = namespace[old]
        return super().__new__(mcls, name, bases, namespace, **kwargs)


class DataFlow(metaclass=_DataFlowMeta):
    """Base class of every dataflow: subclasses implement ``__iter__`` (and optionally ``__len__``)."""

    @abstractmethod
    def __iter__(self):
        """Yield datapoints: each a list (or dict) of components."""

    def __len__(self):
        """The number of datapoints in one pass; raises ``NotImplementedError`` when not known."""
        raise UnknownLengthError(f"{type(self).__name__} does not know its length")

    def reset_state(self):
        """Prepare for iteration in the current process (seed generators, start workers). Default: nothing."""

    # tensorpack's older, longer names
    def get_data(self):
        return self.__iter__()

    def size(self):
        return self.__len__()


class RNGDataFlow(DataFlow):
    """A dataflow with a random generator ``self.rng``, (re)created by ``reset_state()`` with ``get_rng``.

    ``rng`` is ``None`` until ``reset_state()`` runs, so each worker process seeds its own generator.
    """

    rng = None

    def reset_state(self):
        self.rng = get_rng(self)

    def _require_rng(self):
        if self.rng is None:
            raise RuntimeError(f"{type(self).__name__}: call reset_state() before iterating "
                               "(it seeds the random generator used for shuffling)")
        return self.rng


class ProxyDataFlow(DataFlow):
    """A dataflow that wraps another one, ``self.ds``; every method forwards to it unless overridden."""

    def __init__(self, ds):
        # duck-typed like tensorpack: anything iterable with a reset_state() will do
        if not (hasattr(ds, "reset_state") and hasattr(ds, "__iter__")):
            raise TypeError(f"{type(self).__name__}: ds must be a DataFlow (iterable with reset_state()), "
                            f"got {type(ds).__name__}")
        self.ds = ds

    def reset_state(self):
        self.ds.reset_state()

    def __len__(self):
        return len(self.ds)

    def __iter__(self):
        return iter(self.ds)

"""Dataflows that produce datapoints from Python data (tensorpack's ``tensorpack.dataflow.raw``)."""
import copy

import numpy as np

from .base import DataFlow, RNGDataFlow, UnknownLengthError

__all__ = ["DataFromList", "DataFromGenerator", "DataFromIterable", "FakeData"]


class DataFromList(RNGDataFlow):
    """Yield the elements of a list, each one datapoint.

    Args:
        lst: the datapoints.
        shuffle: ``True`` (the default, as in tensorpack) visits them in a new random order every pass,
            drawn from ``self.rng`` (so ``reset_state()`` must have been called); ``False`` keeps list order.
    """

    def __init__(self, lst, shuffle=True):
        super().__init__()
        self.lst = lst
        self.shuffle = shuffle

    def __len__(self):
        return len(self.lst)

    def __iter__(self):
        if not self.shuffle:
            yield from self.lst
            return
        order = np.arange(len(self.lst))
        self._require_rng().shuffle(order)
        for k in order:
            yield self.lst[k]


class DataFromGenerator(DataFlow):
    """Wrap an iterable, or a callable returning a fresh iterable per pass.

    A plain generator can be consumed only once; pass a callable (e.g. the generator *function*) for a
    dataflow that can be iterated every epoch. ``len()`` is the iterable's length when it has one, and
    raises ``NotImplementedError`` otherwise.
    """

    def __init__(self, gen):
        self._gen = gen

    def __iter__(self):
        yield from (self._gen() if callable(self._gen) else self._gen)

    def __len__(self):
        try:
            return len(self._gen)
        except TypeError:
            raise UnknownLengthError("DataFromGenerator: the wrapped generator has no length") from None


class DataFromIterable(DataFlow):
    """Wrap an iterable (list, tuple, any re-iterable object); ``len()`` is its length if it has one."""

    def __init__(self, iterable):
        self._itr = iterable
        try:
            self._len = len(iterable)
        except TypeError:
            self._len = None

    def __len__(self):
        if self._len is None:
            raise UnknownLengthError("DataFromIterable: the wrapped iterable has no length")
        return self._len

    def __iter__(self):
        yield from self._itr


class FakeData(RNGDataFlow):
    """Uniform random arrays of the given shapes (for ``--fake`` runs and speed tests).

    Args:
        shapes: one shape (list/tuple of ints) per component.
        size: datapoints per pass.
        random: ``True`` draws new arrays for every datapoint; ``False`` draws once per pass and repeats
            (shallow copies of) that datapoint.
        dtype: one dtype for all components, or a list with one per component.
        domain: ``(low, high)`` for all components, or a list with one per component.
    """

    def __init__(self, shapes, size=1000, random=True, dtype="float32", domain=(0, 1)):
        super().__init__()
        self.shapes = [list(s) for s in shapes]
        self._size = int(size)
        self.random = random
        self.dtype = [dtype] * len(shapes) if isinstance(dtype, str) else list(dtype)
        self.domain = [domain] * len(shapes) if isinstance(domain, tuple) else list(domain)
        if len(self.dtype) != len(self.shapes) or len(self.domain) != len(self.shapes):
            raise ValueError(f"FakeData: {len(self.shapes)} shapes need as many dtypes and domains, got "
                             f"{len(self.dtype)} dtypes and {len(self.domain)} domains")

    def __len__(self):
        return self._size

    def _draw(self):
        rng = self._require_rng()
        # np.asarray: rand() of a scalar shape [] is a Python float, which has no astype
        return [np.asarray(rng.rand(*shape) * (high - low) + low).astype(dt)
                for shape, dt, (low, high) in zip(self.shapes, self.dtype, self.domain, strict=True)]

    def __iter__(self):
        fixed = None if self.random else self._draw()
        for _ in range(self._size):
            yield self._draw() if fixed is None else copy.copy(fixed)

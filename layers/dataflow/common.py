"""Dataflows that transform another dataflow (tensorpack's ``tensorpack.dataflow.common``)."""
import copy
import sys
from collections.abc import Mapping

import numpy as np

from .base import DataFlowReentrantGuard, ProxyDataFlow, UnknownLengthError

__all__ = ["BatchData", "MapData", "MapDataComponent", "RepeatedData", "RepeatedDataPoint", "FixedSizeData",
           "PrintData", "SelectComponent"]


def _batch_dtype(first):
    """The dtype tensorpack stacks a component with, decided by the batch's first element.

    Python ints become int32 and Python floats float32; Python bools are ints too, so they also become
    int32 (tensorpack tests ``int`` before ``bool``); bytes/str become a NumPy string array; NumPy
    arrays and scalars keep their own dtype.
    """
    if isinstance(first, int):
        return "int32"
    if type(first) is float:
        return "float32"
    if isinstance(first, (bytes, str)):
        return "str"
    dtype = getattr(first, "dtype", None)
    if dtype is None:
        raise TypeError(f"BatchData: cannot stack components of type {type(first).__name__}; "
                        "expected NumPy arrays/scalars, Python numbers or strings (or use use_list=True)")
    return dtype


def _stack(values, where):
    dtype = _batch_dtype(values[0])
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        shapes = [np.shape(v) for v in values]
        raise ValueError(f"BatchData: cannot stack component {where!r} into one array (shapes {shapes}, "
                         f"dtype {dtype}): {e}. Use use_list=True for components of varying shape") from e


class BatchData(ProxyDataFlow):
    """Group ``batch_size`` consecutive datapoints into one, adding a leading batch axis to each component.

    Args:
        ds: a dataflow of lists/tuples or dicts.
        batch_size: datapoints per batch (> 0).
        remainder: ``False`` (default) drops the last incomplete batch, so every batch has exactly
            ``batch_size`` rows; ``True`` also yields it, smaller.
        use_list: ``False`` (default) stacks each component into a NumPy array (dtype rules in
            ``_batch_dtype``); ``True`` gives a Python list of the components instead.

    ``len()`` is ``len(ds) // batch_size``, plus one if ``remainder`` and a partial batch is left.
    """

    def __init__(self, ds, batch_size, remainder=False, use_list=False):
        super().__init__(ds)
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size <= 0:
            raise ValueError(f"BatchData: batch_size must be a positive integer, got {batch_size!r}")
        if not remainder:
            try:
                n = len(ds)
            except NotImplementedError:
                n = None
            if n is not None and batch_size > n:
                raise ValueError(f"BatchData: batch_size={batch_size} is larger than the dataflow ({n} "
                                 "datapoints) and remainder=False, so no batch would ever be produced")
        self.batch_size = int(batch_size)
        self.remainder = remainder
        self.use_list = use_list

    def __len__(self):
        full, rest = divmod(len(self.ds), self.batch_size)
        return full + int(bool(rest) and self.remainder)

    def __iter__(self):
        holder = []
        for dp in self.ds:
            holder.append(dp)
            if len(holder) == self.batch_size:
                yield BatchData.aggregate_batch(holder, self.use_list)
                holder = []
        if self.remainder and holder:
            yield BatchData.aggregate_batch(holder, self.use_list)

    @staticmethod
    def aggregate_batch(data_holder, use_list=False):
        """Turn a list of datapoints (all lists/tuples, or all dicts) into one batched datapoint."""
        first = data_holder[0]
        if isinstance(first, (list, tuple)):
            cols = [[dp[k] for dp in data_holder] for k in range(len(first))]
            return [c if use_list else _stack(c, k) for k, c in enumerate(cols)]
        if isinstance(first, dict):
            return {key: [dp[key] for dp in data_holder] if use_list
                    else _stack([dp[key] for dp in data_holder], key) for key in first}
        raise ValueError(f"BatchData: a datapoint must be a list, tuple or dict, got {type(first).__name__}")


class MapData(ProxyDataFlow):
    """Apply ``func`` to every datapoint; a ``None`` result drops that datapoint.

    ``func`` receives a shallow copy of the datapoint (so replacing components is safe, modifying
    arrays in place is not). ``len()`` is ``len(ds)``, which over-counts if ``func`` drops datapoints.
    """

    def __init__(self, ds, func):
        super().__init__(ds)
        if not callable(func):
            raise TypeError(f"{type(self).__name__}: func must be callable, got {type(func).__name__}")
        self.func = func

    def __iter__(self):
        for dp in self.ds:
            out = self.func(copy.copy(dp))
            if out is not None:
                yield out


class MapDataComponent(MapData):
    """Apply ``func`` to component ``index`` (an int, or a key for dict datapoints) of every datapoint.

    A ``None`` result drops the datapoint. Other components are untouched; tuples come out as lists.
    """

    def __init__(self, ds, func, index=0):
        if not callable(func):
            raise TypeError(f"MapDataComponent: func must be callable, got {type(func).__name__}")
        self._index = index
        self._func = func
        super().__init__(ds, self._mapper)

    def _mapper(self, dp):
        out = self._func(dp[self._index])
        if out is None:
            return None
        dp = list(dp) if isinstance(dp, tuple) else copy.copy(dp)
        dp[self._index] = out
        return dp


class RepeatedData(ProxyDataFlow):
    """Iterate ``ds`` ``num`` times in a row (``num=-1``: forever, and ``len()`` is then unknown)."""

    def __init__(self, ds, num):
        super().__init__(ds)
        if not isinstance(num, int) or (num < 0 and num != -1):
            raise ValueError(f"RepeatedData: num must be a non-negative int or -1 (forever), got {num!r}")
        self.num = num

    def __len__(self):
        if self.num == -1:
            raise UnknownLengthError("RepeatedData(num=-1) is infinite and has no length")
        return len(self.ds) * self.num

    def __iter__(self):
        if self.num == -1:
            while True:
                yield from self.ds
        for _ in range(self.num):
            yield from self.ds


class RepeatedDataPoint(ProxyDataFlow):
    """Yield every datapoint of ``ds`` ``num`` times in a row (``num >= 1``)."""

    def __init__(self, ds, num):
        super().__init__(ds)
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"RepeatedDataPoint: num must be an int >= 1, got {num!r}")
        self.num = num

    def __len__(self):
        return len(self.ds) * self.num

    def __iter__(self):
        for dp in self.ds:
            for _ in range(self.num):
                yield dp


class FixedSizeData(ProxyDataFlow):
    """Make every pass exactly ``size`` datapoints long, restarting ``ds`` whenever it runs out.

    ``keep_state=True`` (default) continues the next pass where the previous one stopped in ``ds``
    (ds = 1..5, size 3: ``1 2 3 | 4 5 1 | 2 3 4``); ``False`` restarts ``ds`` every pass (``1 2 3 | 1 2 3``).
    """

    def __init__(self, ds, size, keep_state=True):
        super().__init__(ds)
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"FixedSizeData: size must be a positive int, got {size!r}")
        self._size = size
        self._keep = keep_state
        self._itr = None
        self._guard = DataFlowReentrantGuard()

    def __len__(self):
        return self._size

    def reset_state(self):
        super().reset_state()
        self._itr = None

    def _next(self):
        if self._itr is None:
            self._itr = iter(self.ds)
        try:
            return next(self._itr)
        except StopIteration:
            self._itr = iter(self.ds)
            try:
                return next(self._itr)
            except StopIteration:
                raise ValueError("FixedSizeData: the wrapped dataflow produced no datapoints") from None

    def __iter__(self):
        with self._guard:
            for _ in range(self._size):
                yield self._next()
            if not self._keep:
                self._itr = None


class SelectComponent(ProxyDataFlow):
    """Keep only the components at ``idxs`` of every datapoint, in that order (``[dp[i] for i in idxs]``)."""

    def __init__(self, ds, idxs):
        super().__init__(ds)
        self.idxs = list(idxs)

    def __iter__(self):
        for dp in self.ds:
            yield [dp[i] for i in self.idxs]


def _describe(value, pos, depth, max_depth, max_list):
    """Lines describing one component: type, dtype, shape and value range, nested lists indented."""
    indent = "  " * depth
    if isinstance(value, (bool, int, float, np.generic)):
        return [f"{indent}{pos}: {type(value).__name__} with value {value}"]
    if isinstance(value, np.ndarray):
        rng = f" in range [{value.min()}, {value.max()}]" if value.size else " (empty)"
        return [f"{indent}{pos}: ndarray:{value.dtype} of shape {value.shape}{rng}"]
    if isinstance(value, (list, tuple)):
        lines = [f"{indent}{pos}: {type(value).__name__} of len {len(value)}"]
        if depth + 1 > max_depth:
            return lines + ([f"{indent}  ..."] if value else [])
        for k, sub in enumerate(value):
            if k == max_list:
                lines.append(f"{indent}  ...")
                break
            lines += _describe(sub, k, depth + 1, max_depth, max_list)
        return lines
    return [f"{indent}{pos}: {type(value).__name__}"]


class PrintData(ProxyDataFlow):
    """Pass datapoints through unchanged, printing the structure of the first ``num`` of them.

    For each component it prints the type, and for arrays the dtype, shape and value range; nested
    lists are shown down to ``max_depth`` levels and ``max_list`` elements. ``name`` labels the output.
    The count restarts at every ``reset_state()``. Output goes to standard output.
    """

    def __init__(self, ds, num=1, name=None, max_depth=3, max_list=3):
        super().__init__(ds)
        self.num = num
        self.name = name
        self.max_depth = max_depth
        self.max_list = max_list
        self.cnt = 0

    def reset_state(self):
        super().reset_state()
        self.cnt = 0

    def _message(self, dp):
        items = dp.items() if isinstance(dp, Mapping) else enumerate(dp)
        lines = [f"datapoint {self.cnt}/{self.num} with {len(dp)} components consists of"]
        for key, value in items:
            lines += _describe(value, key, 1, self.max_depth, self.max_list)
        return "\n".join(lines)

    def __iter__(self):
        for dp in self.ds:
            if self.cnt < self.num:
                if self.cnt == 0:
                    label = f" ({self.name})" if self.name is not None else ""
                    print(f"Contents of DataFlow{label}:", file=sys.stdout)
                print(self._message(dp), file=sys.stdout, flush=True)
                self.cnt += 1
            yield dp

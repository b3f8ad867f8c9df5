"""The checks every request gets, whatever its format (see :mod:`service.pipeline`): decoded JSON lists
become NumPy arrays, and every array is checked against its input's spec, with a clear 400 for every
client mistake."""
from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, NamedTuple

import numpy as np

from .errors import InvalidRequest, PayloadTooLarge, clip
from .model import TensorSpec

__all__ = ["to_batch", "check_batch", "check_array", "check_input_names", "check_outputs", "lists_to_arrays",
           "shape_str", "numbers_array", "JsonBudget", "json_budget", "check_json_budget"]

# Room for the envelope around the tensors: the body object, "parameters", "outputs" lists, v2's per-input
# objects and their "shape" lists, TF Serving's per-instance objects (those scale with rows: see below).
_ENVELOPE_CONTAINERS = 64
_ENVELOPE_VALUES = 256


def shape_str(shape) -> str:
    return "[" + ", ".join("N" if i == 0 and d is None else ("?" if d is None else str(d))
                           for i, d in enumerate(shape)) + "]"


def _describe_bad_list(value: Any, depth: int = 0) -> str:
    """Why np.array failed: the first ragged level or non-numeric element."""
    if depth > 64:   # NumPy's dimension limit; also keeps a hostile 1000-deep list from exhausting the stack
        return "a list nested more than 64 levels deep"
    if isinstance(value, list):
        if not value:
            return "an empty list"
        lens = {len(v) if isinstance(v, list) else -1 for v in value}
        if len(lens) > 1:
            return f"a ragged list at depth {depth} (sub-list lengths {sorted(lens)[:5]})"
        for v in value:
            msg = _describe_bad_list(v, depth + 1)
            if msg:
                return msg
        return ""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()} (booleans are not numbers)"
    if not isinstance(value, (int, float)):
        return f"a non-numeric value {str(value)[:40]!r} ({type(value).__name__})"
    return ""


def check_array(spec: TensorSpec, arr: np.ndarray, field: str, check_range: bool = True) -> np.ndarray:
    """Check shape, dtype and values of an already-built array and cast it to the spec's dtype.

    Booleans and numbers are never converted into each other. ``check_range``: values outside the
    spec's declared ``value_range`` are refused (naming the first offending row and value)."""
    want = (None, *spec.shape)
    if arr.ndim >= 1 and arr.shape[0] == 0:
        raise InvalidRequest(f"input {spec.name!r} is an empty batch (0 rows)", field=field,
                             expected="at least 1 row", received=0)
    if arr.ndim != len(want) or any(w is not None and w != g for w, g in zip(want, arr.shape, strict=False)):
        raise InvalidRequest(f"input {spec.name!r} has shape {list(arr.shape)}, expected {shape_str(want)} "
                             "(batch first)", field=field, expected=shape_str(want), received=list(arr.shape))
    dtype = np.dtype(spec.dtype)
    if arr.dtype.kind not in "biuf":
        raise InvalidRequest(f"input {spec.name!r} must be numeric, got dtype {arr.dtype}", field=field,
                             expected=dtype.name, received=str(arr.dtype))
    if (arr.dtype.kind == "b") != (dtype.kind == "b"):
        raise InvalidRequest(f"input {spec.name!r} takes {dtype.name} values, got {arr.dtype.name} (booleans and "
                             "numbers are not converted into each other)", field=field, expected=dtype.name,
                             received=arr.dtype.name)
    # float data: one min and one max answer finiteness (NaN propagates into both, an Inf is one of
    # them), the float64 -> float32 overflow check and, below, the declared range
    lo = hi = None
    if arr.dtype.kind == "f" and arr.size:
        lo, hi = arr.min().item(), arr.max().item()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidRequest(f"input {spec.name!r} contains NaN or Inf (or numbers beyond the range of "
                                 f"{arr.dtype.name})", field=field, expected="finite numbers", received="NaN/Inf")
    if dtype.kind == "f" and arr.size and arr.dtype != dtype:
        lim = float(np.finfo(dtype).max)     # e.g. FP64 data for a float32 input: no silent overflow to Inf
        if lo is None:                       # integer data
            lo, hi = arr.min().item(), arr.max().item()
        if lo < -lim or hi > lim:
            raise InvalidRequest(f"input {spec.name!r} takes {dtype.name} values, got values beyond its range "
                                 f"+-{lim:g}", field=field, expected=f"|x| <= {lim:g}", received=f"[{lo:g}, {hi:g}]")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = arr.min().item(), arr.max().item()
        if lo < info.min or hi > info.max:
            got = f"[{lo:g}, {hi:g}]"
            raise InvalidRequest(f"input {spec.name!r} takes {dtype.name} values in [{info.min}, {info.max}], "
                                 f"got values in {got}", field=field, expected=f"[{info.min}, {info.max}]",
                                 received=got)
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise InvalidRequest(f"input {spec.name!r} takes integers ({dtype.name}), got fractional values",
                                 field=field, expected=dtype.name, received="fractional numbers")
    arr = arr.astype(dtype, copy=False)
    if check_range and spec.value_range and arr.size:
        if lo is not None and dtype.kind == "f":
            lo, hi = dtype.type(lo), dtype.type(hi)    # rounding is monotonic: the min and max of the cast data
        _check_range(spec, arr, field, lo, hi)
    return arr


def _check_range(spec: TensorSpec, arr: np.ndarray, field: str, lo=None, hi=None) -> None:
    """400 naming the first row (and its first value) outside ``spec.value_range`` (bounds included).

    Two vectorised reductions on the way through (none when the caller has the data's min and max);
    the row is looked for only once one is out."""
    low, high = spec.value_range
    low_t, high_t = (arr.dtype.type(low), arr.dtype.type(high)) if arr.dtype.kind == "f" else (low, high)
    if lo is None:
        lo, hi = arr.min(), arr.max()
    if lo >= low_t and hi <= high_t:     # compared in the input's dtype: a float32 bound is itself in range
        return
    rows = arr.reshape(len(arr), -1)
    out = (rows < low_t) | (rows > high_t)
    row = int(out.any(axis=1).argmax())
    value = rows[row][out[row]][0].item()
    raise InvalidRequest(f"input {spec.name!r}: row {row} holds {value:g}, outside the input's declared range "
                         f"[{low:g}, {high:g}] (a model's config.json can turn this check off: "
                         '"validate_range": false)', field=field, expected=[low, high],
                         received={"row": row, "value": value})


def numbers_array(value: Any, what: str, field: str, shape_hint: str | TensorSpec = "numbers",
                  maybe_bools: bool = True) -> np.ndarray:
    """A nested list of JSON numbers -> an array whose dtype NumPy inferred (float64 or int64).

    Strings, booleans and nulls are refused in every position, never coerced (NumPy would turn "5" and
    true into numbers); the error names the first offender (and ``shape_hint``: the expected shape, or the
    spec to take it from). ``maybe_bools=False`` is the caller's promise
    that the body has no ``true``/``false`` token, which skips the per-element type walk.
    """
    if not isinstance(value, list):
        raise InvalidRequest(f"{what} must be a nested list of numbers, got {type(value).__name__}",
                             field=field, expected="nested list", received=type(value).__name__)
    try:
        with np.errstate(over="ignore", invalid="ignore"):   # overflow -> Inf, refused by check_array
            arr = np.array(value)                            # dtype inferred: strings show up as kind U
            if arr.dtype.kind == "O" and not _describe_bad_list(value):
                arr = np.array(value, dtype=np.float64)      # ints beyond int64: range-checked later
    except (ValueError, TypeError, OverflowError, RecursionError):
        arr = None
    if arr is None or arr.dtype.kind == "O":
        reason = _describe_bad_list(value) or "values that are not numbers"
        raise InvalidRequest(f"{what} must be a rectangular nested list of numbers, got {reason}",
                             field=field, received=reason, expected=shape_hint if isinstance(shape_hint, str)
                             else f"{shape_str((None, *shape_hint.shape))} numbers")   # (text made only on error)
    if arr.dtype.kind in "USVb" or (maybe_bools and arr.size and bool in set(
            map(type, np.array(value, dtype=object).ravel().tolist()))):
        reason = _describe_bad_list(value) or ("strings" if arr.dtype.kind in "USV" else "booleans")
        raise InvalidRequest(f"{what} must hold numbers, got {reason}", field=field, expected="numbers",
                             received=reason)
    return arr


def check_input_names(specs: list[TensorSpec], given, field: str = "inputs") -> None:
    """400 when ``given`` (the input names a request sent) is not exactly the model's inputs."""
    names = [s.name for s in specs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidRequest(f"unknown input(s) {unknown}; this model takes {names}", field=field,
                             expected=names, received=sorted(given))
    missing = [n for n in names if n not in given]
    if missing:
        raise InvalidRequest(f"missing input(s) {missing}; this model takes {names}", field=field,
                             expected=names, received=sorted(given))


def lists_to_arrays(specs: list[TensorSpec], inputs: Any, field: str = "inputs",
                    maybe_bools: bool = True) -> dict[str, np.ndarray]:
    """``{"name": nested list}`` (or a bare nested list for a single-input model) -> one array per input,
    as NumPy infers it from the JSON numbers (see :func:`numbers_array`); :func:`check_batch` checks them.

    ``maybe_bools=False``: the body holds no ``true``/``false`` token (a byte search the caller made),
    so no element can be a boolean."""
    if isinstance(inputs, list):
        if len(specs) != 1:
            raise InvalidRequest(f"this model takes {len(specs)} inputs; send an object keyed by input name",
                                 field=field, expected=[s.name for s in specs], received="a bare list")
        inputs = {specs[0].name: inputs}
    if not isinstance(inputs, dict):
        raise InvalidRequest(f"{field!r} must be an object keyed by input name (or a nested list for a single-input "
                             f"model), got {type(inputs).__name__}", field=field,
                             expected="object or list", received=type(inputs).__name__)
    check_input_names(specs, inputs, field)
    return {s.name: numbers_array(inputs[s.name], f"input {s.name!r}", f"{field}.{s.name}", s, maybe_bools)
            for s in specs}


def check_batch(specs: list[TensorSpec], arrays: dict[str, np.ndarray], max_rows: int, field: str = "inputs",
                fields: dict[str, str] | None = None, check_range: bool = True,
                preprocessed: Collection[str] = ()) -> dict[str, np.ndarray]:
    """The checks every request's inputs get, whatever their format: each array against its spec
    (:func:`check_array`: shape, dtype, finite, declared range), one batch size, at most ``max_rows`` rows.

    ``arrays`` holds one array per spec (the codec checked the names). Errors name ``fields[name]``, else
    ``"{field}.{name}"``; batch-level errors name ``field``. ``check_range=False``: the model's config
    turned the range check off. ``preprocessed``: inputs the server makes itself from an uploaded image,
    passed through as they are: the model's own preprocessing gives them its shape, dtype and range by
    construction (in a multi-process server it runs later, in the engine, so here they are still the
    decoded images). Returns the other arrays cast to the specs' dtypes."""
    out = {s.name: arrays[s.name] if s.name in preprocessed else
           check_array(s, arrays[s.name], fields[s.name] if fields and s.name in fields else f"{field}.{s.name}",
                       check_range) for s in specs}
    rows = {n: a.shape[0] for n, a in out.items()}
    n = rows[specs[0].name]
    if len(rows) > 1 and len(set(rows.values())) != 1:
        raise InvalidRequest(f"inputs have different batch sizes {rows}", field=field,
                             expected="equal batch sizes", received=rows)
    if n > max_rows:
        raise InvalidRequest(f"{n} rows in one request, limit is {max_rows} (TPSERVE_MAX_ROWS_PER_REQUEST)",
                             field=field, expected=f"<= {max_rows} rows", received=n)
    return out


def check_outputs(specs: list[TensorSpec], wanted: list[str], field: str = "outputs") -> None:
    """400 naming the output names in ``wanted`` the model does not have (checked before it runs)."""
    available = [s.name for s in specs]
    bad = [clip(w) for w in wanted if w not in available]
    if bad:
        raise InvalidRequest(f"unknown output(s) {bad}; this model has {available}", field=field,
                             expected=available, received=bad)


def to_batch(specs: list[TensorSpec], inputs: Any, max_rows: int, field: str = "inputs",
             maybe_bools: bool = True, check_range: bool = True) -> dict[str, np.ndarray]:
    """``{"name": nested list}`` (or a bare nested list for a single-input model) -> checked arrays:
    :func:`lists_to_arrays`, then :func:`check_batch`."""
    return check_batch(specs, lists_to_arrays(specs, inputs, field, maybe_bools), max_rows, field,
                       check_range=check_range)


class JsonBudget(NamedTuple):
    """Most JSON containers (lists + objects) and values a valid request for a model can hold."""

    containers: int
    values: int


def json_budget(specs: list[TensorSpec], max_rows: int) -> JsonBudget | None:
    """The budget for ``max_rows`` rows of every input, in the most container-heavy valid form (a nested
    list per row, plus a TF Serving instance object per row); None when a dimension is unknown (then only
    the body-size limit applies)."""
    containers, values = 0, 0
    for s in specs:
        if any(d is None for d in s.shape):
            return None
        lists, span = 1, 1                       # the row's own list, then one per index of each outer dim
        for d in s.shape[:-1]:
            span *= d
            lists += span
        containers += lists
        values += math.prod(s.shape)
    containers += 1                              # TF Serving row format: an object per instance
    return JsonBudget(max_rows * containers + _ENVELOPE_CONTAINERS, max_rows * (values + len(specs)) + _ENVELOPE_VALUES)


def check_json_budget(body: bytes, budget: JsonBudget | None, model: str | None) -> None:
    """413 before parsing when ``body`` holds more JSON containers or values than any valid request can.

    Counting bytes is C-speed (a few ms for 32 MB) while building the Python objects of
    ``[[],[],...]`` costs seconds and a gigabyte; brackets and commas inside strings only over-count,
    and valid numeric bodies have none.
    """
    if budget is not None:
        check_json_counts(*json_counts(body), budget, model)


def json_counts(data: bytes) -> tuple[int, int]:
    """(lists + objects opened, commas) in a piece of JSON text: what :func:`check_json_counts` bounds."""
    return data.count(b"[") + data.count(b"{"), data.count(b",")


def check_json_counts(containers: int, commas: int, budget: JsonBudget, model: str | None) -> None:
    """413 when a body (or the part of it read so far: the counts only grow) holds more JSON containers
    or values than any valid request to ``model`` can (see :func:`check_json_budget`)."""
    target = f"model {model!r}" if model else "any model served here"
    if containers > budget.containers:
        raise PayloadTooLarge(f"the body holds {containers} JSON lists/objects; a request to {target} "
                              f"can use at most {budget.containers} (its inputs at TPSERVE_MAX_ROWS_PER_REQUEST "
                              "rows, or its queue size if smaller)", field="body",
                              expected=f"<= {budget.containers} lists/objects", received=containers)
    # every element of every container is followed by a comma but the last: elements <= commas + containers
    elements = commas + containers
    if elements > budget.values + budget.containers:
        raise PayloadTooLarge(f"the body holds about {elements} JSON values; a request to {target} can use "
                              f"at most {budget.values + budget.containers} (its inputs at "
                              "TPSERVE_MAX_ROWS_PER_REQUEST rows, or its queue size if smaller)", field="body",
                              expected=f"<= {budget.values + budget.containers} values", received=elements)

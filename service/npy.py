"""``.npy`` request bodies: a whole batch as one binary array, without JSON's parsing cost.

The header is parsed and checked *before* anything is allocated: the declared shape times the item
size must equal the bytes that follow the header, so a 100-byte body declaring a [1e9, 3] array
costs a header read, not gigabytes. The array is then a zero-copy view of the body. Only plain
numeric dtypes are accepted (no object arrays, so nothing can unpickle), in either byte order.
"""
from __future__ import annotations

import ast
import math
import struct

import numpy as np

from .errors import InvalidRequest

__all__ = ["NPY_TYPES", "load_npy"]

NPY_TYPES = {"application/x-npy", "application/npy"}

_MAGIC = b"\x93NUMPY"
_HEADER_KEYS = {"descr", "fortran_order", "shape"}
_MAX_HEADER_BYTES = 64 * 1024       # numpy writes ~128 bytes; a 64 KB "header" is an attack, not an array
_MAX_NDIM = 32                      # NumPy's own dimension limit


def _bad(msg: str) -> InvalidRequest:
    return InvalidRequest(f"unreadable .npy body: {msg}", field="body", expected="a numeric .npy array (numpy.save)")


def _header(body: bytes) -> tuple[dict, int]:
    """The header dict and the offset of the data, from the format's version 1, 2 or 3 layout."""
    if not body.startswith(_MAGIC):
        raise InvalidRequest("the body is not a .npy file (it must start with the \\x93NUMPY magic)",
                             field="body", expected=".npy bytes (numpy.save)")
    if len(body) < 10:
        raise _bad("truncated header")
    major = body[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", body[8:10]), 10
    elif major in (2, 3):
        if len(body) < 12:
            raise _bad("truncated header")
        (hlen,), start = struct.unpack("<I", body[8:12]), 12
    else:
        raise _bad(f"format version {major}.{body[7]} is not one numpy writes (1.0, 2.0 or 3.0)")
    if hlen > _MAX_HEADER_BYTES or start + hlen > len(body):
        raise _bad(f"the header declares {hlen} bytes, the body holds {len(body) - start}")
    text = body[start:start + hlen]
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise _bad("the header is not a Python literal dict") from None
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise _bad(f"the header must be a dict with exactly the keys {sorted(_HEADER_KEYS)}")
    return header, start + hlen


def load_npy(body: bytes) -> np.ndarray:
    """Parse a ``.npy`` body into a read-only array that shares the body's memory."""
    header, offset = _header(body)
    shape, descr, fortran = header["shape"], header["descr"], header["fortran_order"]
    if not isinstance(fortran, bool):
        raise _bad(f"'fortran_order' must be True or False, got {fortran!r:.40}")
    if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise _bad(f"'shape' must be a tuple of at most {_MAX_NDIM} non-negative integers, got {shape!r:.60}")
    if not isinstance(descr, str):
        raise _bad("only plain numeric dtypes are accepted (no structured or object arrays)")
    try:
        dtype = np.dtype(descr)
    except TypeError:
        raise _bad(f"unknown dtype {descr!r:.40}") from None
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise InvalidRequest(f"the .npy body must hold a numeric array, got dtype {dtype}", field="body",
                             expected="bool, int, uint or float", received=str(dtype))
    count = math.prod(shape)
    have = len(body) - offset
    if count * dtype.itemsize != have:
        raise _bad(f"the header declares shape {list(shape)} of {dtype} ({count * dtype.itemsize} bytes) "
                   f"but {have} bytes follow it")
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")

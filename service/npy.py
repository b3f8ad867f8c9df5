"""``.npy`` request bodies: a whole batch as one binary array, without JSON's parsing cost.

Only plain numeric arrays are accepted; ``allow_pickle=False`` means no object arrays and no code
path that unpickles.
"""
from __future__ import annotations

import io

import numpy as np

from .errors import InvalidRequest

__all__ = ["NPY_TYPES", "load_npy"]

NPY_TYPES = {"application/x-npy", "application/npy"}


def load_npy(body: bytes) -> np.ndarray:
    if not body.startswith(b"\x93NUMPY"):
        raise InvalidRequest("the body is not a .npy file (it must start with the \\x93NUMPY magic)",
                             field="body", expected=".npy bytes (numpy.save)")
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as e:     # object arrays (pickle) and malformed headers/data both land here
        raise InvalidRequest(f"unreadable .npy body: {e}", field="body", expected="a numeric .npy array") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise InvalidRequest("the .npy body must hold a numeric array", field="body")
    return arr

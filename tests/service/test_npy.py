"""The .npy body reader: equal to numpy's own reader on every valid file, and a 400 (never a 500 or a
large allocation) for every crafted header."""
from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest

from service.errors import InvalidRequest
from service.npy import load_npy


def _npy(arr: np.ndarray, version=None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return buf.getvalue()


def _raw(header: str, data: bytes = b"", version: int = 1) -> bytes:
    """A .npy file with a hand-written header (padded like numpy pads it)."""
    text = header.encode("latin1")
    pre = 10 if version == 1 else 12
    text += b" " * (-(pre + len(text) + 1) % 64) + b"\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + data


@pytest.mark.parametrize("arr", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.arange(6, dtype=">i4").reshape(3, 2),                       # big-endian
    np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    np.array([True, False]),
    np.zeros((0, 5), dtype=np.uint8),
    np.float32(3.5).reshape(()),
])
@pytest.mark.parametrize("version", [None, (2, 0), (3, 0)])
def test_valid_files_read_like_numpy(arr, version):
    body = _npy(arr, version)
    got = load_npy(body)
    want = np.load(io.BytesIO(body), allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_the_array_is_a_view_of_the_body_not_a_copy():
    body = _npy(np.ones((256, 64), np.float32))
    got = load_npy(body)
    assert not got.flags.owndata and not got.flags.writeable


def test_a_huge_declared_shape_with_a_small_body_is_refused_without_allocating():
    body = _raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 3), }", b"\0" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match=r"declares shape \[1000000000, 3\].*but 16 bytes follow"):
            load_npy(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000          # a header's worth, not 12 GB


@pytest.mark.parametrize(("body", "match"), [
    (b"PK\x03\x04 not npy", "must start with"),
    (b"\x93NUMPY\x01", "truncated header"),
    (b"\x93NUMPY\x09\x00\x10\x00{}", "format version 9.0"),
    (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "header declares 65535 bytes"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", b"\0" * 8), "exactly the keys"),
    (_raw("[1, 2, 3]"), "exactly the keys"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } + __import__('os')"), "not a Python literal"),
    (_raw("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8), "numeric array"),
    (_raw("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", b"\0" * 4), "plain numeric"),
    (_raw("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", b"\0" * 12), "numeric array"),
    (_raw("{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4), "unknown dtype"),
    (_raw("{'descr': '<f4', 'fortran_order': 'yes', 'shape': (1,), }", b"\0" * 4), "fortran_order"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }", b"\0" * 8), "non-negative"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (True,), }", b"\0" * 4), "non-negative"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': 3, }", b"\0" * 12), "tuple"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 40 + "), }", b"\0" * 4), "at most 32"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 15), "16 bytes"),
    (_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4, version=2)[:11], "truncated"),
])
def test_crafted_bodies_are_a_clear_400(body, match):
    with pytest.raises(InvalidRequest, match=match) as exc:
        load_npy(body)
    assert exc.value.status == 400

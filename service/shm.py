"""Shared memory for tensors crossing processes (front end <-> engine): no pickles, one copy each way.

Each front-end process owns one :class:`Arena`: a file in ``/dev/shm`` (tmpfs) mapped by both
processes. The front end writes a request's input arrays into a region it allocates, sends the
engine a small message holding ``(name, dtype, shape, offset)`` per array (:func:`describe`), and
the engine maps the same bytes as NumPy arrays (:func:`views`) without copying. The front end
also reserves a region for the outputs when their size is known from the signature; the engine
writes them there. A region is freed when the front end has the engine's answer (never earlier:
the engine may still be reading inputs of a cancelled request).

Arrays that do not fit the arena (or whose output size is unknown) travel in a one-off
:class:`Segment`, unlinked by the reader as soon as it has copied it.

Memory is reserved with ``posix_fallocate`` when a segment is created, so a full tmpfs (Docker's
default ``/dev/shm`` is 64 MB) is an error at that moment (``ENOSPC``), never a ``SIGBUS`` later.
Linux only (``/dev/shm``; elsewhere the temporary directory, which works but is not RAM-backed):
the embedded single-process server needs none of this.
"""
from __future__ import annotations

import itertools
import mmap
import os
import tempfile
from collections import OrderedDict

import numpy as np

from .errors import ServiceError

__all__ = ["Arena", "Segment", "SharedMemoryFull", "shm_dir", "views", "write_arrays", "nbytes", "aligned"]

_ALIGN = 64
_counter = itertools.count()


class SharedMemoryFull(ServiceError):
    """No room left in the shared-memory filesystem (tmpfs full): raise its size, or lower the arenas'.
    A request that meets it is answered 503 with this message (the server, not the request, is short)."""

    status = 503


def shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def aligned(n: int) -> int:
    """``n`` bytes rounded up to the 64-byte alignment every region and array gets."""
    return max(_ALIGN, (n + _ALIGN - 1) // _ALIGN * _ALIGN)


class Segment:
    """One named, memory-mapped file in :func:`shm_dir`. ``Segment.create(prefix, size)`` makes one
    (space reserved up front); ``Segment.attach(name)`` maps an existing one."""

    def __init__(self, name: str, mm: mmap.mmap, size: int):
        self.name, self.mm, self.size = name, mm, size
        self.buf = memoryview(mm)

    @classmethod
    def create(cls, prefix: str, size: int) -> Segment:
        size = aligned(size)
        name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        path = os.path.join(shm_dir(), name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                os.unlink(path)
                raise SharedMemoryFull(f"cannot reserve {size} bytes of shared memory in {shm_dir()} "
                                       f"({e.strerror}): enlarge it (docker: --shm-size / shm_size; Kubernetes: "
                                       "an emptyDir with medium Memory on /dev/shm) or lower "
                                       "TPSERVE_SHM_ARENA_MB") from None
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mm, size)

    @classmethod
    def attach(cls, name: str) -> Segment:
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad shared-memory segment name {name!r}")
        fd = os.open(os.path.join(shm_dir(), name), os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mm, size)

    def unlink(self):
        try:
            os.unlink(os.path.join(shm_dir(), self.name))
        except FileNotFoundError:
            pass

    def close(self):
        """Unmap (when no NumPy view of it is alive any more; else the mapping goes with the last view)."""
        self.buf.release()
        try:
            self.mm.close()
        except BufferError:
            pass


class Arena:
    """A ring allocator over one :class:`Segment` (single-threaded: the front end's event loop).

    Regions are handed out in order around the ring and reclaimed when the oldest live one is freed;
    a region freed out of order is reclaimed when everything allocated before it is. ``alloc`` returns
    None when no contiguous room is left (the caller then uses a one-off :class:`Segment`)."""

    def __init__(self, segment: Segment):
        self.segment = segment
        self.size = segment.size
        self._head = 0
        self._live: OrderedDict[int, list] = OrderedDict()   # offset -> [size, freed], in allocation order

    @property
    def used(self) -> int:
        """Bytes in regions not freed yet."""
        return sum(size for size, freed in self._live.values() if not freed)

    def alloc(self, n: int) -> int | None:
        n = aligned(n)
        if not self._live:
            self._head = 0
            return self._take(0, n) if n <= self.size else None
        tail = next(iter(self._live))
        head = self._head
        if head > tail:                       # live regions lie in [tail, head): room at the end, then at the start
            if head + n <= self.size:
                return self._take(head, n)
            if n <= tail:
                return self._take(0, n)
            return None
        if head + n <= tail:                  # wrapped: live regions lie in [tail, end) + [0, head)
            return self._take(head, n)
        return None

    def _take(self, offset: int, n: int) -> int:
        self._live[offset] = [n, False]
        self._head = offset + n
        return offset

    def free(self, offset: int):
        self._live[offset][1] = True
        while self._live:
            first = next(iter(self._live))
            if not self._live[first][1]:
                break
            del self._live[first]


def nbytes(arrays) -> int:
    return sum(aligned(a.nbytes) for a in arrays)


def write_arrays(buf: memoryview, offset: int, arrays: dict[str, np.ndarray]) -> list[list]:
    """Copy ``arrays`` into ``buf`` from ``offset`` (each 64-byte aligned); return their descriptions."""
    out = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"{name}: object arrays cannot cross processes")
        dst = np.ndarray(a.shape, a.dtype, buffer=buf, offset=offset)
        np.copyto(dst, a, casting="no")
        out.append([name, a.dtype.str, list(a.shape), offset])
        offset += aligned(a.nbytes)
    return out


def views(buf: memoryview, descriptions: list[list]) -> dict[str, np.ndarray]:
    """NumPy arrays over ``buf`` as :func:`write_arrays` described them (no copy; valid while ``buf`` is)."""
    out = {}
    for name, dtype, shape, offset in descriptions:
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise TypeError(f"{name}: object dtype in shared memory")
        out[name] = np.ndarray(tuple(shape), dt, buffer=buf, offset=offset)
    return out

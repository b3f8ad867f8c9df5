"""A pickle loader that admits only what CIFAR's python batches hold.

A pickle can name any importable function and have the unpickler call it (``os.system`` included), so
loading a pickle from an untrusted file runs arbitrary code. CIFAR's ``data_batch_*``/``test_batch``/
``train``/``test``/``meta`` files are pickles of dicts holding lists, strings, ints and NumPy arrays. The
only globals they name are the three NumPy needs to rebuild an array; this unpickler resolves exactly
those and refuses every other global before anything is called.
"""
import pickle

import numpy as np

__all__ = ["UnsafePickleError", "load_restricted"]

# np.ndarray.__reduce__ names numpy's array-rebuilding function; taking it from there avoids importing
# the private module it lives in (numpy.core in NumPy 1, numpy._core in NumPy 2).
_RECONSTRUCT = np.empty(0).__reduce__()[0]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # pickles written with NumPy 1 (the CIFAR files)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # pickles written with NumPy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed NumPy array constructors; nothing was executed."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file, encoding="bytes")  # Python 2 ``str`` stays bytes, as for tensorpack
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load the global {module}.{name}: a CIFAR python batch holds only "
                "dicts, lists, strings, numbers and NumPy arrays, so this file is not one (a pickle naming "
                "other globals can run arbitrary code); nothing from it was executed") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refusing a persistent id; CIFAR batches have none")


def load_restricted(file, source="pickle"):
    """Unpickle an open binary ``file`` admitting only NumPy array globals; ``source`` names it in errors."""
    return _RestrictedUnpickler(file, source).load()

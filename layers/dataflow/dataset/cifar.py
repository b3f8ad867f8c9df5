"""CIFAR-10 and CIFAR-100 from the standard python distribution (tensorpack's ``dataset.Cifar10/100``).

The batches are read from the extracted folder (``cifar-10-batches-py/`` or ``cifar-100-python/``) under
the dataset directory, or, when that folder is absent, straight from the distribution tarball
(``cifar-10-python.tar.gz``/``cifar-100-python.tar.gz``) in the same directory, without extracting it.
The batches are pickles: they are loaded only through :mod:`safe_pickle`, which refuses any global
other than NumPy's array constructors.
"""
import io
import tarfile

import numpy as np

from ..base import RNGDataFlow
from ._files import DatasetNotFoundError, dataset_dir, require_files
from .safe_pickle import load_restricted

__all__ = ["CifarBase", "Cifar10", "Cifar100"]

_LAYOUT = {
    10: dict(folder="cifar-10-batches-py", tarball="cifar-10-python.tar.gz",
             train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"], meta="batches.meta",
             labels="labels", label_names="label_names",
             source="They come from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (the python "
                    "version of CIFAR-10); extract it in that directory, or just put the tarball there."),
    100: dict(folder="cifar-100-python", tarball="cifar-100-python.tar.gz",
              train=["train"], test=["test"], meta="meta",
              labels="fine_labels", label_names="fine_label_names",
              source="They come from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (the python "
                     "version of CIFAR-100); extract it in that directory, or just put the tarball there."),
}


def _text_keys(obj):
    """Python 2 pickles load with bytes keys and strings; give them back as str."""
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


class _Source:
    """Reads the distribution's files from the extracted folder or from the tarball."""

    def __init__(self, who, directory, layout):
        self.directory = directory
        self.layout = layout
        folder = directory / layout["folder"]
        names = layout["train"] + layout["test"] + [layout["meta"]]
        self._tarball = directory / layout["tarball"]
        if not folder.is_dir() and self._tarball.is_file():
            self._members = {f"{layout['folder']}/{n}" for n in names}
            with tarfile.open(self._tarball, "r:gz") as tar:
                missing = self._members - set(tar.getnames())
            if missing:
                raise DatasetNotFoundError(f"{who}: {self._tarball} lacks {sorted(missing)}; it is not the "
                                           f"standard distribution. {layout['source']}")
        else:
            self._tarball = None
            require_files(who, directory, [f"{layout['folder']}/{n}" for n in names], layout["source"])

    def load(self, name):
        """Unpickle one file of the distribution (restricted to NumPy array globals)."""
        rel = f"{self.layout['folder']}/{name}"
        if self._tarball is None:
            with open(self.directory / rel, "rb") as f:
                return _text_keys(load_restricted(f, str(self.directory / rel)))
        with tarfile.open(self._tarball, "r:gz") as tar:
            data = tar.extractfile(rel).read()
        return _text_keys(load_restricted(io.BytesIO(data), f"{self._tarball}:{rel}"))


def _read_batches(source, names, label_key):
    """``[[image uint8 (32, 32, 3), label int], ...]`` from the named batch files, in file order."""
    out = []
    for name in names:
        batch = source.load(name)
        where = f"{source.layout['folder']}/{name}"
        if "data" not in batch or label_key not in batch:
            raise ValueError(f"{where}: expected the keys 'data' and {label_key!r}, found {sorted(batch)}")
        data, labels = batch["data"], list(batch[label_key])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
            raise ValueError(f"{where}: expected 'data' as uint8 (N, 3072) with N = {len(labels)} labels, got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are channel-major: CHW -> HWC
        out.extend([img, int(label)] for img, label in zip(images, labels, strict=True))
    return out


class CifarBase(RNGDataFlow):
    """Datapoints ``[image, label]``: image uint8 ``(32, 32, 3)`` RGB in [0, 255], label a Python int.

    Args:
        train_or_test: ``'train'`` or ``'test'``.
        shuffle: visit the images in a new random order every pass; ``None`` (default) means shuffle
            the training set only.
        dir: the dataset directory; default ``$TENSORPACK_DATASET/cifar10_data`` (or ``cifar100_data``).
        cifar_classnum: 10 or 100.
    """

    def __init__(self, train_or_test, shuffle=None, dir=None, cifar_classnum=10):  # noqa: A002
        super().__init__()
        who = f"Cifar{cifar_classnum}"
        if train_or_test not in ("train", "test"):
            raise ValueError(f"{who}: train_or_test must be 'train' or 'test', got {train_or_test!r}")
        if cifar_classnum not in _LAYOUT:
            raise ValueError(f"CifarBase: cifar_classnum must be 10 or 100, got {cifar_classnum!r}")
        self.cifar_classnum = cifar_classnum
        self.train_or_test = train_or_test
        self.shuffle = train_or_test == "train" if shuffle is None else shuffle
        self.dir = dataset_dir(dir, f"cifar{cifar_classnum}_data")
        self._layout = _LAYOUT[cifar_classnum]
        self._source = _Source(who, self.dir, self._layout)
        meta = self._source.load(self._layout["meta"])
        self._label_names = [n.decode("latin1") if isinstance(n, bytes) else n
                             for n in meta[self._layout["label_names"]]]
        self.data = _read_batches(self._source, self._layout[train_or_test], self._layout["labels"])

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        order = np.arange(len(self.data))
        if self.shuffle:
            self._require_rng().shuffle(order)
        for k in order:
            yield self.data[k]

    def get_per_pixel_mean(self, names=("train", "test")):
        """The float32 ``(32, 32, 3)`` mean image over the named splits (read from disk again)."""
        if isinstance(names, str) or not set(names) <= {"train", "test"} or not names:
            raise ValueError(f"get_per_pixel_mean: names must be a non-empty tuple of 'train'/'test', got {names!r}")
        files = [f for split in ("train", "test") if split in names for f in self._layout[split]]
        images = np.array([img for img, _ in _read_batches(self._source, files, self._layout["labels"])],
                          dtype="float32")
        return np.mean(images, axis=0)

    def get_per_channel_mean(self, names=("train", "test")):
        """The ``(3,)`` per-channel mean over the named splits."""
        return np.mean(self.get_per_pixel_mean(names), axis=(0, 1))

    def get_label_names(self):
        """The class names, in label order (from the distribution's meta file)."""
        return self._label_names


class Cifar10(CifarBase):
    """CIFAR-10 (see :class:`CifarBase`): 50000 training and 10000 test images, 10 classes."""

    def __init__(self, train_or_test, shuffle=None, dir=None):  # noqa: A002
        super().__init__(train_or_test, shuffle, dir, 10)


class Cifar100(CifarBase):
    """CIFAR-100 (see :class:`CifarBase`) with its 100 fine labels."""

    def __init__(self, train_or_test, shuffle=None, dir=None):  # noqa: A002
        super().__init__(train_or_test, shuffle, dir, 100)

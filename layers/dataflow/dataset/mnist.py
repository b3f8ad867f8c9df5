"""MNIST and Fashion-MNIST from their standard idx files (tensorpack's ``dataset.Mnist``)."""
import gzip

import numpy as np

from ..base import RNGDataFlow
from ._files import dataset_dir, require_files

__all__ = ["Mnist", "FashionMnist", "read_idx_images", "read_idx_labels"]

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049


def _open_idx(path):
    # the standard distribution is gzip-compressed; an already-unpacked copy is read as is
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_header(f, path, magic, count):
    raw = f.read(4 * count)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise ValueError(f"{path}: not an idx file of the expected kind (magic number {found}, expected {magic})")
    if len(raw) != 4 * count:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} of {4 * count} bytes)")
    return [int(v) for v in np.frombuffer(raw, dtype=">u4")[1:]]


def read_idx_images(path):
    """The images of an idx3 file as uint8 ``(N, rows, cols)``."""
    with _open_idx(path) as f:
        n, rows, cols = _read_header(f, path, _IMAGES_MAGIC, 4)
        data = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8)
    if data.size != n * rows * cols:
        raise ValueError(f"{path}: truncated: the header announces {n} images of {rows}x{cols}, "
                         f"the file holds {data.size} bytes of pixels")
    return data.reshape(n, rows, cols)


def read_idx_labels(path):
    """The labels of an idx1 file as uint8 ``(N,)``."""
    with _open_idx(path) as f:
        (n,) = _read_header(f, path, _LABELS_MAGIC, 2)
        labels = np.frombuffer(f.read(n), dtype=np.uint8)
    if labels.size != n:
        raise ValueError(f"{path}: truncated: the header announces {n} labels, the file holds {labels.size}")
    return labels


class Mnist(RNGDataFlow):
    """Datapoints ``[image, label]``: image float32 ``(28, 28)`` in [0, 1] (pixel / 255), label a uint8 scalar.

    Args:
        train_or_test: ``'train'`` (60000 images) or ``'test'`` (10000).
        shuffle: visit the images in a new random order every pass (default True, as in tensorpack).
        dir: the directory holding the four files; default ``$TENSORPACK_DATASET/mnist_data``.

    Reads ``train-images-idx3-ubyte.gz``/``train-labels-idx1-ubyte.gz`` or
    ``t10k-images-idx3-ubyte.gz``/``t10k-labels-idx1-ubyte.gz``; a missing file raises
    ``DatasetNotFoundError`` (nothing is downloaded).
    """

    _DIR_NAME = "mnist_data"
    _SOURCE = ("These are the standard MNIST files published at http://yann.lecun.com/exdb/mnist/ "
               "(tensorpack's source; also mirrored by torchvision and TensorFlow Datasets).")
    _FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

    def __init__(self, train_or_test, shuffle=True, dir=None):  # noqa: A002  (tensorpack's argument name)
        super().__init__()
        if train_or_test not in self._FILES:
            raise ValueError(f"{type(self).__name__}: train_or_test must be 'train' or 'test', got {train_or_test!r}")
        self.train_or_test = train_or_test
        self.shuffle = shuffle
        self.dir = dataset_dir(dir, self._DIR_NAME)
        image_path, label_path = require_files(type(self).__name__, self.dir, self._FILES[train_or_test],
                                               self._SOURCE)
        images = read_idx_images(image_path)
        self.labels = read_idx_labels(label_path)
        if images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{type(self).__name__}: {image_path} holds {images.shape[0]} images but "
                             f"{label_path} holds {self.labels.shape[0]} labels")
        self.images = images.astype("float32") / 255.0  # (N, rows, cols)

    def __len__(self):
        return self.images.shape[0]

    def __iter__(self):
        order = np.arange(len(self))
        if self.shuffle:
            self._require_rng().shuffle(order)
        for k in order:
            yield [self.images[k], self.labels[k]]


class FashionMnist(Mnist):
    """Fashion-MNIST, same files and API as :class:`Mnist`, under ``$TENSORPACK_DATASET/fashion_mnist_data``."""

    _DIR_NAME = "fashion_mnist_data"
    _SOURCE = ("These are the Fashion-MNIST files published at https://github.com/zalandoresearch/fashion-mnist "
               "(same names and format as MNIST).")

    def get_label_names(self):
        """The ten class names, in label order."""
        return ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

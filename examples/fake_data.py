"""Small generated stand-ins for MNIST and CIFAR, written in the distributions' own file formats.

The examples' ``--fake`` option writes these files into a temporary directory and then reads them
with the real ``dataset.Mnist`` / ``dataset.Cifar10`` / ``dataset.Cifar100`` readers, so the whole
input pipeline of a run on generated data is the one a run on the real files uses. Both stand-ins
are learnable, so a falling loss means something:

* MNIST: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 0-16 grey levels),
  each pixel blown up to a 3x3 block and centred in a 28x28 frame with a 2-pixel border (MNIST
  centres 20x20 digits in 28x28), written as the four gzipped idx files. The last
  :data:`MNIST_TEST_SIZE` digits are the test split.
* CIFAR: 32x32 RGB images whose class decides a colour cast and a sinusoidal stripe pattern
  (orientation and frequency), with a random phase and pixel noise; written as the python
  distribution's pickled batches (``cifar-10-batches-py/`` or ``cifar-100-python/``).

Everything is derived from a fixed seed, so the same call writes the same bytes (a test can
rebuild the data a run saw).
"""
from __future__ import annotations

import atexit
import gzip
import os
import pickle
import shutil
import struct
import tempfile

import numpy as np

__all__ = ["MNIST_TEST_SIZE", "temporary_dir", "write_mnist", "write_cifar", "cifar_images"]

#: digits held out as MNIST's test split (one validation batch of tensorpack's MNIST example)
MNIST_TEST_SIZE = 256


def temporary_dir(prefix="tpserve-fake-") -> str:
    """A new temporary directory, removed when the process that made it exits (forked dataflow
    workers leave it alone)."""
    path = tempfile.mkdtemp(prefix=prefix)
    owner = os.getpid()

    def remove():
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)
    atexit.register(remove)
    return path


def _write_idx(path, magic, array):
    # idx: big-endian magic, then one big-endian uint32 per dimension, then the raw uint8 values
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(directory) -> str:
    """Write ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` from scikit-learn's digits into
    ``directory`` (created if missing) and return it: 1,541 training and 256 test images, 28x28
    uint8, labels 0-9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    blocks = np.kron(digits.images, np.ones((3, 3)))               # (N, 24, 24), values 0..16
    images = np.pad(blocks, ((0, 0), (2, 2), (2, 2)))               # (N, 28, 28)
    images = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    os.makedirs(directory, exist_ok=True)
    split = len(images) - MNIST_TEST_SIZE
    for prefix, sl in (("train", slice(None, split)), ("t10k", slice(split, None))):
        _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), 2051, images[sl])
        _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), 2049, labels[sl])
    return str(directory)


def cifar_images(labels, classnum, seed):
    """uint8 ``(N, 32, 32, 3)`` images for ``labels``: class ``c`` has a fixed colour cast and stripes
    of a fixed orientation and frequency; phase and noise are random (from ``seed``)."""
    style = np.random.RandomState(1000 + classnum)                  # the classes' look, the same for every split
    casts = style.uniform(-45, 45, (classnum, 3))
    freqs = style.randint(2, 7, classnum)
    vertical = style.rand(classnum) < 0.5
    rng = np.random.RandomState(seed)
    coords = np.arange(32, dtype=np.float64)
    out = np.empty((len(labels), 32, 32, 3), np.uint8)
    for i, c in enumerate(labels):
        wave = np.sin(2 * np.pi * freqs[c] * coords / 32 + rng.uniform(0, 2 * np.pi))   # (32,)
        stripes = wave[None, :] if vertical[c] else wave[:, None]                          # (1, 32) or (32, 1)
        img = 128 + casts[c] + 50 * stripes[..., None] + rng.normal(0, 20, (32, 32, 3))
        out[i] = np.clip(np.round(img), 0, 255)
    return out


def _batch(images, labels, label_key):
    # the files keep each image as one row of 3072 values: all red, then green, then blue (CHW)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {"batch_label": "generated", label_key: [int(v) for v in labels], "data": rows,
            "filenames": [f"generated_{k:05d}.png" for k in range(len(labels))]}


def _dump(path, obj):
    # protocol 4: bytes and str have their own opcodes, so the only globals are NumPy's array
    # constructors, all that dataset.Cifar's restricted unpickler admits
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def write_cifar(directory, classnum=10, train_size=1000, test_size=200, seed=0) -> str:
    """Write a CIFAR-``classnum`` (10 or 100) python distribution of generated images into
    ``directory`` (created if missing) and return it.

    Args:
        classnum: 10 writes ``cifar-10-batches-py/`` (five training batches, ``test_batch``,
            ``batches.meta``); 100 writes ``cifar-100-python/`` (``train``, ``test``, ``meta``).
        train_size / test_size: number of images (for CIFAR-10, ``train_size`` is split evenly
            over the five batches and must be a multiple of 5).
        seed: the images' random phases and noise; labels cycle through the classes.
    """
    if classnum not in (10, 100):
        raise ValueError(f"write_cifar: classnum must be 10 or 100, got {classnum!r}")
    if classnum == 10 and train_size % 5:
        raise ValueError(f"write_cifar: CIFAR-10 has five training batches, so train_size must be a multiple "
                         f"of 5, got {train_size}")
    train_labels = np.arange(train_size) % classnum
    test_labels = np.arange(test_size) % classnum
    train = cifar_images(train_labels, classnum, seed)
    test = cifar_images(test_labels, classnum, seed + 1)
    names = [f"generated class {c}" for c in range(classnum)]
    if classnum == 10:
        folder = os.path.join(directory, "cifar-10-batches-py")
        os.makedirs(folder, exist_ok=True)
        per = train_size // 5
        for b in range(5):
            sl = slice(b * per, (b + 1) * per)
            _dump(os.path.join(folder, f"data_batch_{b + 1}"), _batch(train[sl], train_labels[sl], "labels"))
        _dump(os.path.join(folder, "test_batch"), _batch(test, test_labels, "labels"))
        _dump(os.path.join(folder, "batches.meta"), {"label_names": names, "num_cases_per_batch": per,
                                                     "num_vis": 3072})
    else:
        folder = os.path.join(directory, "cifar-100-python")
        os.makedirs(folder, exist_ok=True)
        _dump(os.path.join(folder, "train"), _batch(train, train_labels, "fine_labels"))
        _dump(os.path.join(folder, "test"), _batch(test, test_labels, "fine_labels"))
        _dump(os.path.join(folder, "meta"), {"fine_label_names": names, "coarse_label_names": names[:20]})
    return str(directory)

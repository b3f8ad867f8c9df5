"""Datasets the training CLI can use without a network connection.

``digits``: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``, 1,797
8x8 images with 17 grey levels 0-16, classes 0-9), turned into MNIST-like input:

* values scaled to [0, 1] (``v / 16``); ink is bright, the background 0, as in MNIST;
* upsampled 8x8 -> 28x28 with bilinear interpolation (half-pixel centres, edge replication;
  :func:`model_zoo.preprocess.resize`), float32;
* split 80/20 into train (1,438) and held-out (359) images, stratified by class, with the fixed
  seed :data:`SPLIT_SEED` — independent of the training seed, so the held-out set is always the
  same images (what the bundled model's accuracy is measured on).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import preprocess as P

__all__ = ["Dataset", "load_digits", "DATASETS", "SPLIT_SEED", "HELDOUT_FRACTION", "dataset_names", "load"]

#: seed of the train/held-out split (never changes, whatever ``--seed`` the training uses)
SPLIT_SEED = 20240611
HELDOUT_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An in-memory classification dataset.

    Attributes:
        name: dataset name.
        train_x, train_y: training images (float32, ``image_shape``) and int32 labels.
        heldout_x, heldout_y: the fixed held-out split.
        image_shape: shape of one example; dtype: its numpy dtype name.
        labels: class names.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    heldout_x: np.ndarray
    heldout_y: np.ndarray
    image_shape: tuple[int, ...]
    dtype: str
    labels: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _digits_images(images8: np.ndarray, size: int) -> np.ndarray:
    x = images8.astype(np.float32) / 16.0                      # (N, 8, 8) in [0, 1]
    x = np.stack([P.resize(im, (size, size), "bilinear") for im in x])   # (N, size, size)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _stratified_split(y: np.ndarray, fraction: float, seed: int):
    rs = np.random.RandomState(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rs.shuffle(idx)
        held.extend(idx[: int(round(len(idx) * fraction))])
    held = np.sort(np.asarray(held))
    train = np.setdiff1d(np.arange(len(y)), held)
    return train, held


def load_digits(size: int = 28) -> Dataset:
    """scikit-learn's digits as MNIST-like ``size`` x ``size`` images (see the module docstring).

    Raises:
        RuntimeError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise RuntimeError("the 'digits' dataset needs scikit-learn (pip install scikit-learn)") from e
    raw = sk_load_digits()
    x = _digits_images(raw.images, size)                       # (1797, size, size)
    y = raw.target.astype(np.int32)
    train, held = _stratified_split(y, HELDOUT_FRACTION, SPLIT_SEED)
    return Dataset("digits", x[train], y[train], x[held], y[held], (size, size), "float32",
                   tuple(str(i) for i in range(10)))


#: dataset name -> loader
DATASETS = {"digits": load_digits}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load(name: str) -> Dataset:
    """Load dataset ``name``; ``ValueError`` listing the available ones otherwise."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(dataset_names())}") from None
    return loader()

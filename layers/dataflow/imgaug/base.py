"""Augmentor base classes (tensorpack's ``imgaug.ImageAugmentor``, ``AugmentorList``, ``PhotometricAugmentor``).

An augmentor takes uint8 images in [0, 255] or floating-point images, ``(h, w)`` or ``(h, w, c)``. Its
random generator ``self.rng`` comes from ``get_rng`` and is recreated by ``reset_state()``, which the
augmenting dataflows call in every process that uses them (and, on Unix, automatically after a fork),
so each worker process draws its own random numbers.

Two ways to write one, both as in tensorpack:

* override ``get_transform(img)``: draw random parameters, return a :mod:`transform` object;
* the older interface: ``_get_augment_params(img)`` returns the parameters and ``_augment(img, params)``
  applies them.
"""
import os
import weakref

import numpy as np

from ..rng import get_rng
from .transform import LazyTransform, PhotometricTransform, TransformFactory, TransformList

__all__ = ["ImageAugmentor", "Augmentor", "AugmentorList", "PhotometricAugmentor", "check_image"]


def check_image(img, who="augmentor"):
    """Refuse anything but a NumPy image before augmenting it."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{who}: expected the image as a numpy.ndarray, got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"{who}: expected an (h, w) or (h, w, c) image, got shape {img.shape}")


def _reset_after_fork(ref):
    aug = ref()
    if aug is not None:
        aug.reset_state()


class ImageAugmentor:
    """Base class of every augmentor; ``self.rng`` is its ``np.random.RandomState``."""

    def __init__(self):
        self.reset_state()
        if hasattr(os, "register_at_fork"):
            # a forked child must not replay the parent's random stream
            os.register_at_fork(after_in_child=lambda ref=weakref.ref(self): _reset_after_fork(ref))

    def _init(self, params=None):
        """Store constructor arguments as attributes (tensorpack's ``self._init(locals())`` idiom)."""
        for key, value in (params or {}).items():
            if key != "self" and not key.startswith("_"):
                setattr(self, key, value)

    def reset_state(self):
        """Recreate ``self.rng`` (see ``get_rng``)."""
        self.rng = get_rng(self)

    def _rand_range(self, low=1.0, high=None, size=None):
        """Uniform float32 sample(s) in ``[low, high)``; one argument means ``[0, low)``."""
        if high is None:
            low, high = 0, low
        return self.rng.uniform(low, high, [] if size is None else size).astype("float32")

    def get_transform(self, img):
        """Draw this augmentor's random parameters for ``img`` and return the deterministic transform.

        The default implementation serves augmentors written with the older
        ``_get_augment_params``/``_augment`` pair.
        """
        if not hasattr(self, "_augment"):
            raise NotImplementedError(f"{type(self).__name__} must implement get_transform(img) "
                                      "(or the older _get_augment_params(img) and _augment(img, params))")
        params = self._get_augment_params(img) if hasattr(self, "_get_augment_params") else None
        return TransformFactory(name=type(self).__name__, apply_image=lambda im: self._augment(im, params))

    def augment(self, img):
        """Augment one image: ``get_transform(img).apply_image(img)``."""
        check_image(img, type(self).__name__)
        return self.get_transform(img).apply_image(img)

    def augment_return_params(self, img):
        """Older interface: ``(augmented image, transform)``."""
        tfm = self.get_transform(img)
        return tfm.apply_image(img), tfm


Augmentor = ImageAugmentor  # tensorpack's legacy name


class PhotometricAugmentor(ImageAugmentor):
    """An augmentor that only changes pixel values: subclasses implement ``_get_augment_params`` and
    ``_augment``; coordinates pass through unchanged."""

    def _get_augment_params(self, img):
        return None

    def get_transform(self, img):
        params = self._get_augment_params(img)
        return PhotometricTransform(lambda im: self._augment(im, params), name=type(self).__name__)


class AugmentorList(ImageAugmentor):
    """Apply several augmentors in order; each one's random choice sees the previous one's output."""

    def __init__(self, augmentors):
        if not isinstance(augmentors, (list, tuple)):
            raise TypeError(f"AugmentorList: expected a list of augmentors, got {type(augmentors).__name__}")
        for aug in augmentors:
            if not hasattr(aug, "get_transform"):
                raise TypeError(f"AugmentorList: {aug!r} is not an augmentor (it has no get_transform)")
        self.augmentors = list(augmentors)
        super().__init__()

    def reset_state(self):
        super().reset_state()
        for aug in self.augmentors:
            aug.reset_state()

    def get_transform(self, img):
        check_image(img, "AugmentorList")
        tfms = []
        for k, aug in enumerate(self.augmentors):
            tfm = aug.get_transform(img) if k == 0 else LazyTransform(aug.get_transform)
            tfms.extend(tfm.tfms if isinstance(tfm, TransformList) else [tfm])
        return TransformList(tfms)

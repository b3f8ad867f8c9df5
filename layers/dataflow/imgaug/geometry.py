"""Geometric augmentors: crops, flips, resizing and pasting onto a canvas (tensorpack's ``crop.py``,
``misc.py`` and ``paste.py``)."""
import numpy as np

from ._resize import INTER_LINEAR
from .base import ImageAugmentor
from .transform import CropTransform, FlipTransform, NoOpTransform, ResizeTransform, TransformFactory

__all__ = ["RandomCrop", "CenterCrop", "Flip", "Resize", "ResizeShortestEdge", "CenterPaste",
           "BackgroundFiller", "ConstantBackgroundFiller"]


def _shape2d(value, who):
    """tensorpack's ``shape2d``: an int ``a`` means ``(a, a)``; a pair stays a pair."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value), int(value))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{who}: expected an int or an (h, w) pair, got {value!r}")


def _check_fits(img, shape, who):
    if img.shape[0] < shape[0] or img.shape[1] < shape[1]:
        raise ValueError(f"{who}: the image ({img.shape[0]}x{img.shape[1]}) is smaller than "
                         f"{shape[0]}x{shape[1]}")


class RandomCrop(ImageAugmentor):
    """Crop a ``crop_shape`` (``(h, w)`` or an int) window at a uniformly random position.

    The top row is drawn first, ``rng.randint(H - h + 1)``, then the left column, ``rng.randint(W - w + 1)``.
    """

    def __init__(self, crop_shape):
        self.crop_shape = _shape2d(crop_shape, "RandomCrop")
        super().__init__()

    def get_transform(self, img):
        _check_fits(img, self.crop_shape, "RandomCrop")
        y0 = self.rng.randint(img.shape[0] - self.crop_shape[0] + 1)
        x0 = self.rng.randint(img.shape[1] - self.crop_shape[1] + 1)
        return CropTransform(y0, x0, *self.crop_shape)


class CenterCrop(ImageAugmentor):
    """Crop the central ``crop_shape`` window; the offset is ``int((H - h) / 2)``, rounding down."""

    def __init__(self, crop_shape):
        self.crop_shape = _shape2d(crop_shape, "CenterCrop")
        super().__init__()

    def get_transform(self, img):
        _check_fits(img, self.crop_shape, "CenterCrop")
        y0 = int((img.shape[0] - self.crop_shape[0]) * 0.5)
        x0 = int((img.shape[1] - self.crop_shape[1]) * 0.5)
        return CropTransform(y0, x0, *self.crop_shape)


class Flip(ImageAugmentor):
    """Mirror the image with probability ``prob`` (default 0.5): left-right if ``horiz``, top-bottom if
    ``vert`` (exactly one of the two). One ``uniform(0, 1)`` draw per image decides."""

    def __init__(self, horiz=False, vert=False, prob=0.5):
        if horiz == vert:
            raise ValueError("Flip: set exactly one of horiz=True or vert=True (use two Flips for both)")
        self.horiz, self.vert, self.prob = horiz, vert, prob
        super().__init__()

    def get_transform(self, img):
        if self._rand_range() < self.prob:
            return FlipTransform(img.shape[0], img.shape[1], self.horiz)
        return NoOpTransform()


class Resize(ImageAugmentor):
    """Resize to ``shape`` (``(h, w)`` or an int) with OpenCV's rules; ``interp`` is an OpenCV code
    (default ``INTER_LINEAR``; see ``imgaug._resize`` for the supported ones)."""

    def __init__(self, shape, interp=INTER_LINEAR):
        self.shape = _shape2d(shape, "Resize")
        self.interp = interp
        super().__init__()

    def get_transform(self, img):
        return ResizeTransform(img.shape[0], img.shape[1], self.shape[0], self.shape[1], self.interp)


class ResizeShortestEdge(ImageAugmentor):
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (the longer side is rounded
    to the nearest pixel)."""

    def __init__(self, size, interp=INTER_LINEAR):
        self.size = int(size)
        self.interp = interp
        super().__init__()

    def get_transform(self, img):
        h, w = img.shape[:2]
        scale = self.size / min(h, w)
        new_h, new_w = (self.size, int(scale * w + 0.5)) if h < w else (int(scale * h + 0.5), self.size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class BackgroundFiller:
    """Makes the canvas for ``CenterPaste``: subclasses implement ``_fill(background_shape, img)``."""

    def fill(self, background_shape, img):
        return self._fill(tuple(background_shape), img)

    def _fill(self, background_shape, img):
        raise NotImplementedError


class ConstantBackgroundFiller(BackgroundFiller):
    """A canvas filled with ``value``, with the image's dtype and channel count."""

    def __init__(self, value):
        self.value = value

    def _fill(self, background_shape, img):
        shape = background_shape + img.shape[2:]
        return np.zeros(shape, dtype=img.dtype) + self.value


class CenterPaste(ImageAugmentor):
    """Paste the image at the centre of a ``background_shape`` (``(h, w)``) canvas.

    The canvas comes from ``background_filler`` (default: zeros); the image's top-left corner goes to
    ``int((H - h) / 2), int((W - w) / 2)``. No randomness.
    """

    def __init__(self, background_shape, background_filler=None):
        self.background_shape = _shape2d(background_shape, "CenterPaste")
        self.background_filler = background_filler if background_filler is not None \
            else ConstantBackgroundFiller(0)
        super().__init__()

    def get_transform(self, img):
        return TransformFactory(name="CenterPaste", apply_image=self._paste)

    def _paste(self, img):
        bh, bw = self.background_shape
        h, w = img.shape[:2]
        if bh < h or bw < w:
            raise ValueError(f"CenterPaste: the image ({h}x{w}) does not fit the {bh}x{bw} canvas")
        canvas = self.background_filler.fill(self.background_shape, img)
        y0, x0 = int((bh - h) * 0.5), int((bw - w) * 0.5)
        canvas[y0:y0 + h, x0:x0 + w] = img
        return canvas

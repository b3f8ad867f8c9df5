"""Photometric augmentors (tensorpack's ``imgproc.py``): they change pixel values, never the geometry.

As in tensorpack, an augmentor with ``clip=True`` clips to [0, 255] whatever the dtype, uint8 images
are always clipped, and the result is cast back to the input dtype (truncating, like ``astype``).
"""
import numpy as np

from .base import PhotometricAugmentor

__all__ = ["Brightness", "BrightnessScale", "Contrast", "MeanVarianceNormalize", "MinMaxNormalize", "Clip"]

# ITU-R BT.601 luma weights, what OpenCV's RGB2GRAY/BGR2GRAY use
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _reduce(fn, img, all_channel):
    """``fn`` (np.mean, np.std, ...) over the whole image, or per channel, keeping dims to broadcast."""
    return fn(img) if all_channel else fn(img, axis=(0, 1), keepdims=True)


def _finish(img, old_dtype, clip):
    if clip or old_dtype == np.uint8:
        img = np.clip(img, 0, 255)
    return img.astype(old_dtype)


class Brightness(PhotometricAugmentor):
    """Add one random ``delta``, uniform in ``[-delta, delta)``, to every pixel.

    Args:
        delta: the largest shift (> 0), in pixel units (e.g. 63 for [0, 255] images).
        clip: clip the result to [0, 255] even for float images (default True).
    """

    def __init__(self, delta, clip=True):
        if not delta > 0:
            raise ValueError(f"Brightness: delta must be > 0, got {delta!r}")
        self.delta, self.clip = delta, clip
        super().__init__()

    def _get_augment_params(self, img):
        return self._rand_range(-self.delta, self.delta)

    def _augment(self, img, v):
        return _finish(img.astype("float32") + v, img.dtype, self.clip)


class BrightnessScale(PhotometricAugmentor):
    """Multiply every pixel by one random factor, uniform in ``range``; ``clip`` as for Brightness."""

    def __init__(self, range, clip=True):  # noqa: A002  (tensorpack's argument name)
        self.range, self.clip = tuple(range), clip
        super().__init__()

    def _get_augment_params(self, img):
        return self._rand_range(*self.range)

    def _augment(self, img, v):
        return _finish(img.astype("float32") * v, img.dtype, self.clip)


class Contrast(PhotometricAugmentor):
    """``x = (x - mean) * r + mean`` with one random factor ``r`` uniform in ``factor_range``.

    Args:
        factor_range: ``(low, high)`` of the contrast factor (e.g. ``(0.2, 1.8)``).
        rgb: ``None`` (default) uses each channel's own mean for a 3-D image; ``True``/``False`` use
            the mean of the grey image, with the channels read as RGB/BGR. A 2-D image uses its mean.
        clip: clip the result to [0, 255] even for float images (default True).
    """

    def __init__(self, factor_range, rgb=None, clip=True):
        self.factor_range, self.rgb, self.clip = tuple(factor_range), rgb, clip
        super().__init__()

    def _get_augment_params(self, img):
        return self._rand_range(*self.factor_range)

    def _augment(self, img, r):
        if img.ndim == 3 and self.rgb is not None:
            weights = _LUMA_RGB if self.rgb else _LUMA_RGB[::-1]
            mean = np.mean(img.astype("float32")[..., :3] @ weights)
        elif img.ndim == 3:
            mean = np.mean(img, axis=(0, 1), keepdims=True)
        else:
            mean = np.mean(img)
        return _finish(img * r + mean * (1 - r), img.dtype, self.clip)


class MeanVarianceNormalize(PhotometricAugmentor):
    """``x = (x - mean) / max(std, 1 / sqrt(N))``, always returning float32.

    ``N`` is the number of elements of the whole image (channels included), so a flat image does not
    divide by zero. ``all_channel=True`` (default) uses one mean/std over the image; ``False`` one per
    channel.
    """

    def __init__(self, all_channel=True):
        self.all_channel = all_channel
        super().__init__()

    def _augment(self, img, _):
        img = img.astype("float32")
        mean, std = _reduce(np.mean, img, self.all_channel), _reduce(np.std, img, self.all_channel)
        # the floor as float32, so NumPy 2's promotion rules keep the result float32
        std = np.maximum(std, np.float32(1.0 / np.sqrt(img.size)))
        return (img - mean) / std


class MinMaxNormalize(PhotometricAugmentor):
    """Rescale linearly to ``[min, max]`` (defaults 0 and 255), over the whole image or, with
    ``all_channel=False``, per channel; always float32."""

    def __init__(self, min=0, max=255, all_channel=True):  # noqa: A002  (tensorpack's argument names)
        self.min, self.max, self.all_channel = min, max, all_channel
        super().__init__()

    def _augment(self, img, _):
        img = img.astype("float32")
        lo, hi = _reduce(np.min, img, self.all_channel), _reduce(np.max, img, self.all_channel)
        return (self.max - self.min) * (img - lo) / (hi - lo) + self.min


class Clip(PhotometricAugmentor):
    """Clip pixel values to ``[min, max]`` (defaults 0 and 255)."""

    def __init__(self, min=0, max=255):  # noqa: A002  (tensorpack's argument names)
        self.min, self.max = min, max
        super().__init__()

    def _augment(self, img, _):
        return np.clip(img, self.min, self.max)

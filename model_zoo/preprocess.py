"""Image preprocessing in plain NumPy (no OpenCV/Pillow), matching how tensorpack's examples fed
their models.

Resampling follows OpenCV's ``cv2.resize`` conventions (half-pixel centres, edge replication):
``'bicubic'`` is ``INTER_CUBIC`` (Keys kernel, a = -0.75, no antialiasing), ``'bilinear'`` is
``INTER_LINEAR`` and ``'area'`` is a box filter like ``INTER_AREA`` (use it to shrink). Results
agree with OpenCV up to its fixed-point rounding (a grey level or so on uint8 images).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["resize", "resize_shortest_edge", "center_crop", "rgb_to_gray", "fit_size",
           "IMAGENET_MEAN_RGB", "IMAGENET_STD_RGB", "CIFAR10_MEAN_RGB"]

#: ImageNet channel statistics (RGB, 0-1 scale) that tensorpack's ImageNetModel normalises with.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
#: CIFAR-10 training-set channel means (RGB, 0-255). tensorpack subtracts the *per-pixel* mean
#: image of the training set, which is not shipped; the channel means approximate it.
CIFAR10_MEAN_RGB = (125.307, 122.950, 113.865)

_METHODS = ("bilinear", "bicubic", "area")


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def _taps(n_in: int, n_out: int, method: str):
    """Source indices [n_out, K] and weights [n_out, K] of a 1-D resampling."""
    scale = n_in / n_out
    dst = np.arange(n_out, dtype=np.float64)
    if method == "area" and scale > 1:
        lo = dst * scale                                     # covered source interval [lo, hi)
        k = int(math.ceil(scale)) + 1
        idx = np.floor(lo)[:, None].astype(np.int64) + np.arange(k)[None, :]
        start = np.maximum(idx, lo[:, None])
        end = np.minimum(idx + 1, (lo + scale)[:, None])
        w = np.clip(end - start, 0, None) / scale
    else:
        src = (dst + 0.5) * scale - 0.5
        x0 = np.floor(src)
        t = (src - x0)[:, None]
        if method == "bicubic":
            idx = x0[:, None].astype(np.int64) + np.arange(-1, 3)[None, :]
            w = _cubic(np.array([1.0, 0.0, -1.0, -2.0])[None, :] + t)
        else:  # bilinear, or 'area' when enlarging (OpenCV does the same)
            idx = x0[:, None].astype(np.int64) + np.arange(2)[None, :]
            w = np.concatenate([1 - t, t], axis=1)
    return np.clip(idx, 0, n_in - 1), w


def _resample_axis(x: np.ndarray, n_out: int, axis: int, method: str) -> np.ndarray:
    if x.shape[axis] == n_out:
        return x
    idx, w = _taps(x.shape[axis], n_out, method)
    x = np.moveaxis(x, axis, 0)                             # (n_in, ...)
    out = np.zeros((n_out, *x.shape[1:]), dtype=np.float32)
    extra = (slice(None),) + (None,) * (x.ndim - 1)
    for k in range(idx.shape[1]):
        out += w[:, k].astype(np.float32)[extra] * x[idx[:, k]]
    return np.moveaxis(out, 0, axis)


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize an HxW or HxWxC image to ``size = (height, width)``.

    uint8 input gives uint8 output (rounded, clipped to 0-255); anything else gives float32.
    """
    if method not in _METHODS:
        raise ValueError(f"resize: unknown method {method!r}; valid choices: {', '.join(_METHODS)}")
    out_h, out_w = (int(s) for s in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize: size must be positive, got {size}")
    x = np.asarray(image)
    if x.ndim not in (2, 3):
        raise ValueError(f"resize: expected an HxW or HxWxC image, got shape {x.shape}")
    is_uint8 = x.dtype == np.uint8
    y = x.astype(np.float32, copy=False)
    y = _resample_axis(y, out_h, 0, method)
    y = _resample_axis(y, out_w, 1, method)
    if is_uint8:
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return y.astype(np.float32, copy=False)


def resize_shortest_edge(image: np.ndarray, size: int, method: str = "bicubic") -> np.ndarray:
    """Scale so that the shorter side is ``size`` (tensorpack's ``imgaug.ResizeShortestEdge``:
    the longer side is ``int(scale * side + 0.5)``)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = (size, int(scale * w + 0.5)) if h < w else (int(scale * h + 0.5), size)
    return resize(image, (new_h, new_w), method)


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the centre ``size = (height, width)`` (tensorpack's ``imgaug.CenterCrop``: offsets
    ``int((H - h) / 2)``). The image must be at least that large."""
    h, w = image.shape[:2]
    ch, cw = size
    if h < ch or w < cw:
        raise ValueError(f"center_crop: image {h}x{w} is smaller than the crop {ch}x{cw}")
    top, left = int((h - ch) * 0.5), int((w - cw) * 0.5)
    return image[top:top + ch, left:left + cw]


def fit_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to exactly ``size`` with the right filter: box ('area') to shrink, bilinear to enlarge."""
    h, w = image.shape[:2]
    shrinking = size[0] < h or size[1] < w
    return resize(image, size, "area" if shrinking else "bilinear")


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """HxWx3 RGB -> HxW float32 luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B), same scale."""
    x = np.asarray(image, dtype=np.float32)
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114

"""Image resizing in NumPy with OpenCV's ``cv2.resize`` sampling rules, so OpenCV is not a dependency.

Supported ``interp`` values are OpenCV's codes (``cv2.INTER_NEAREST`` = 0, ``cv2.INTER_LINEAR`` = 1,
``cv2.INTER_CUBIC`` = 2); they are also exported here under those names:

* nearest: source index ``floor(dst * src_size / dst_size)``, OpenCV's (asymmetric) rule.
* linear: pixel centres aligned (``src = (dst + 0.5) * scale - 0.5``); a sample left of the first or
  right of the last pixel takes that edge pixel; no anti-aliasing when shrinking.
* cubic: the same centres, Keys' kernel with ``a = -0.75`` (OpenCV's), edge pixels repeated.

Floating-point images keep their dtype (computed in float64). Integer images are rounded to the nearest
integer and clipped to their dtype's range; OpenCV computes uint8 in 11-bit fixed point, so a uint8
result can differ from ``cv2.resize``'s by 1.
"""
import numpy as np

__all__ = ["INTER_NEAREST", "INTER_LINEAR", "INTER_CUBIC", "resize"]

INTER_NEAREST, INTER_LINEAR, INTER_CUBIC = 0, 1, 2
_CUBIC_A = -0.75


def _nearest_weights(src, dst):
    idx = np.minimum(np.floor(np.arange(dst) * (src / dst)).astype(np.int64), src - 1)
    weights = np.zeros((dst, src))
    weights[np.arange(dst), idx] = 1.0
    return weights


def _linear_weights(src, dst):
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    left = np.floor(pos).astype(np.int64)
    frac = pos - left
    # outside the outermost pixel centres OpenCV takes the edge pixel itself
    frac[left < 0] = 0.0
    left[left < 0] = 0
    at_end = left >= src - 1
    frac[at_end] = 0.0
    left[at_end] = src - 1
    right = np.minimum(left + 1, src - 1)
    weights = np.zeros((dst, src))
    rows = np.arange(dst)
    np.add.at(weights, (rows, left), 1.0 - frac)
    np.add.at(weights, (rows, right), frac)
    return weights


def _cubic_kernel(t):
    """Keys' cubic convolution kernel at distances ``t`` (>= 0)."""
    a = _CUBIC_A
    return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def _cubic_weights(src, dst):
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    weights = np.zeros((dst, src))
    rows = np.arange(dst)
    taps = [_cubic_kernel(np.abs(frac - k)) for k in (-1, 0, 1, 2)]
    taps[3] = 1.0 - taps[0] - taps[1] - taps[2]  # OpenCV makes the four taps sum to exactly one
    for k, w in zip((-1, 0, 1, 2), taps, strict=True):
        np.add.at(weights, (rows, np.clip(base + k, 0, src - 1)), w)  # edge pixels repeat
    return weights


_WEIGHTS = {INTER_NEAREST: _nearest_weights, INTER_LINEAR: _linear_weights, INTER_CUBIC: _cubic_weights}


def resize(img, new_h, new_w, interp=INTER_LINEAR):
    """``img`` (``(h, w)`` or ``(h, w, c)``) resized to ``(new_h, new_w)``; see the module docstring."""
    if interp not in _WEIGHTS:
        raise ValueError(f"resize: interp must be one of INTER_NEAREST (0), INTER_LINEAR (1) or INTER_CUBIC (2) "
                         f"(OpenCV's codes), got {interp!r}; INTER_AREA and INTER_LANCZOS4 are not implemented")
    img = np.asarray(img)
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ValueError(f"resize: expected an (h, w) or (h, w, c) image, got shape {img.shape}")
    if new_h < 1 or new_w < 1:
        raise ValueError(f"resize: the new size must be at least 1x1, got {new_h}x{new_w}")
    rows = _WEIGHTS[interp](img.shape[0], new_h)  # (new_h, h)
    cols = _WEIGHTS[interp](img.shape[1], new_w)  # (new_w, w)
    out = np.einsum("ij,jk...->ik...", rows, img.astype(np.float64))  # (new_h, w[, c])
    out = np.einsum("lk,ik...->il...", cols, out)  # (new_h, new_w[, c])
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(img.dtype)

"""Independent NumPy references for the layer tests (float64, loops over kernel taps, no TensorFlow).

Padding follows TensorFlow's documented SAME rule: output = ceil(in / stride), total padding
max((out - 1) * stride + effective_kernel - in, 0), the odd pixel going to the bottom/right.
"""
import numpy as np


def _pads(size, k_eff, stride, padding):
    """(output size, padding before, padding after) along one spatial axis."""
    if padding.upper() == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + k_eff - size, 0)
        return out, total // 2, total - total // 2
    return (size - k_eff) // stride + 1, 0, 0


def conv2d_nhwc(x, w, strides=(1, 1), padding="SAME", dilation=(1, 1), groups=1, bias=None):
    """Cross-correlation of x [N, H, W, C] with w [kh, kw, C / groups, F]; returns [N, H', W', F]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    assert cg * groups == c and f % groups == 0
    (sh, sw), (dh, dw) = strides, dilation
    oh, pt, pb = _pads(h, (kh - 1) * dh + 1, sh, padding)
    ow, pl, pr = _pads(wd, (kw - 1) * dw + 1, sw, padding)
    xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    out = np.zeros((n, oh, ow, f))
    fg = f // groups
    for g in range(groups):
        xg = xp[..., g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw, :]
                out[..., g * fg:(g + 1) * fg] += patch @ w[i, j, :, g * fg:(g + 1) * fg]
    if bias is not None:
        out += np.asarray(bias, np.float64)
    return out


def conv2d_transpose_nhwc(x, w, strides=(1, 1), padding="SAME"):
    """Transposed convolution (the adjoint of :func:`conv2d_nhwc`) of x [N, H, W, C] with w [kh, kw, F, C].

    Output size: in * stride (SAME) or in * stride + max(k - stride, 0) (VALID).
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    kh, kw, f, _ = w.shape
    sh, sw = strides
    if padding.upper() == "SAME":
        oh, ow = h * sh, wd * sw
        pt, pl = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
    else:
        oh, ow = h * sh + max(kh - sh, 0), wd * sw + max(kw - sw, 0)
        pt = pl = 0
    full = np.zeros((n, max((h - 1) * sh + kh, pt + oh), max((wd - 1) * sw + kw, pl + ow), f))
    for i in range(kh):
        for j in range(kw):
            full[:, i:i + (h - 1) * sh + 1:sh, j:j + (wd - 1) * sw + 1:sw, :] += x @ w[i, j].T
    return full[:, pt:pt + oh, pl:pl + ow, :]


def pool2d_nhwc(x, ksize, strides, padding, mode):
    """Max or average pooling of x [N, H, W, C]; with SAME, padded cells are ignored (TF semantics)."""
    x = np.asarray(x, np.float64)
    n, h, wd, c = x.shape
    (kh, kw), (sh, sw) = ksize, strides
    oh, pt, pb = _pads(h, kh, sh, padding)
    ow, pl, pr = _pads(wd, kw, sw, padding)
    xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)], constant_values=np.nan)
    out = np.empty((n, oh, ow, c))
    reduce = np.nanmax if mode == "max" else np.nanmean
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = reduce(xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :], axis=(1, 2))
    return out


def batch_norm(x, mean, var, gamma, beta, epsilon, axis=-1):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta, per channel along ``axis``."""
    shape = [1] * x.ndim
    shape[axis] = -1

    def r(v):
        return np.reshape(np.asarray(v, np.float64), shape)

    return r(gamma) * (np.asarray(x, np.float64) - r(mean)) / np.sqrt(r(var) + epsilon) + r(beta)


def nchw(x):
    return np.transpose(x, [0, 3, 1, 2])


def nhwc(x):
    return np.transpose(x, [0, 2, 3, 1])


def assert_allclose_rel(actual, desired, rtol=1e-5, atol_scale=1e-5):
    """Relative comparison with an absolute floor proportional to the tensor's magnitude (so values
    near zero in a large tensor are not compared to 1e-5 of themselves)."""
    desired = np.asarray(desired, np.float64)
    atol = atol_scale * max(float(np.max(np.abs(desired))), 1e-12)
    np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=rtol, atol=atol)

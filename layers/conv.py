"""Conv2D and Conv2DTranspose (alias Deconv2D), on ``tf.nn`` ops.

CPU note: see :mod:`layers._compat` — NCHW, grouped (``split > 1``) and dilated convolutions build a
CPU-safe graph unless native kernels are available (a GPU), with identical results.
"""
from __future__ import annotations

from . import _utils as U
from ._compat import tf, tfv1, use_native_kernels
from .registry import layer_register

__all__ = ["Conv2D", "Conv2DTranspose", "Deconv2D"]

_CONV_RENAMES = {"out_channel": "filters", "kernel_shape": "kernel_size", "stride": "strides"}


def _kernel_and_bias(w_shape, filters, dtype, use_bias, kernel_initializer, bias_initializer,
                     kernel_regularizer, bias_regularizer):
    """``W`` (default init: untruncated normal, std sqrt(2/fan_in)) and optional ``b`` (zeros), with
    their regularisation losses registered."""
    W = tfv1.get_variable("W", w_shape, dtype=dtype, initializer=kernel_initializer or U.default_kernel_initializer())
    U.add_regularizer(W, kernel_regularizer)
    b = None
    if use_bias:
        b = tfv1.get_variable("b", [filters], dtype=dtype, initializer=bias_initializer or tfv1.zeros_initializer())
        U.add_regularizer(b, bias_regularizer)
    return W, b


def _conv_nhwc_portable(x, W, strides, pad, dilations, split):
    """NHWC convolution every CPU kernel supports: one conv per group; dilation via SpaceToBatch."""
    def one(xi, wi):
        if dilations != [1, 1]:
            return tf.nn.convolution(xi, wi, strides=strides, padding=pad, dilations=dilations)
        return tf.nn.conv2d(xi, wi, strides=[1, *strides, 1], padding=pad)

    if split == 1:
        return one(x, W)
    xs = tf.split(x, split, axis=3)
    ws = tf.split(W, split, axis=3)
    return tf.concat([one(xi, wi) for xi, wi in zip(xs, ws, strict=True)], axis=3)


@layer_register(log_shape=True, positional=("filters", "kernel_size"), renames=_CONV_RENAMES)
def Conv2D(inputs, filters, kernel_size, strides=(1, 1), padding="same", data_format="channels_last",
           dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer=None,
           bias_initializer=None, kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
           split=1):
    """2-D convolution, tensorpack's ``Conv2D``.

    Args:
        inputs: 4-D tensor, NHWC (default) or NCHW.
        filters: output channels (old name ``out_channel``).
        kernel_size: int or (kh, kw) (old name ``kernel_shape``).
        strides: int or pair; default 1 (old name ``stride``).
        padding: 'same' (TF semantics: extra padding bottom/right) or 'valid', any case.
        data_format: 'NHWC'/'channels_last' (default) or 'NCHW'/'channels_first'.
        dilation_rate: int or pair; > 1 requires strides 1.
        activation: applied before the output identity (old name ``nl``); ``BNReLU`` puts its
            variables under ``<name>/bn/``.
        use_bias: add ``b``. kernel_initializer: default untruncated normal, std sqrt(2/fan_in)
            (old name ``W_init``); bias_initializer: default zeros (old name ``b_init``).
        kernel/bias/activity_regularizer: losses go to ``REGULARIZATION_LOSSES`` (also for grouped
            and dilated convolutions, where tensorpack refused them).
        split: number of groups; input and output channels must be divisible by it.

    Returns:
        ``<name>/output``: [N, H', W', filters] (NHWC) or [N, filters, H', W'] (NCHW), post-activation.

    Variable Names:
        * ``W``: [kh, kw, in_channels / split, filters]
        * ``b``: [filters] (if use_bias)
    """
    layer = "Conv2D"
    fmt = U.data_format(layer, data_format)
    pad = U.padding(layer, padding)
    ksize = U.shape2d(layer, "kernel_size", kernel_size)
    strides = U.shape2d(layer, "strides", strides)
    dilations = U.shape2d(layer, "dilation_rate", dilation_rate)
    for arg, val in (("kernel_size", ksize), ("strides", strides), ("dilation_rate", dilations)):
        U.positive(layer, arg, val)
    if not isinstance(filters, int) or filters <= 0:
        raise ValueError(f"{layer}: filters must be a positive int, got {filters!r}")
    if not isinstance(split, int) or split < 1:
        raise ValueError(f"{layer}: split must be a positive int, got {split!r}")
    if dilations != [1, 1] and strides != [1, 1]:
        raise ValueError(f"{layer}: dilation_rate {dilations} > 1 requires strides 1, got strides {strides}")
    in_channel = U.static_channels(layer, inputs, fmt)
    if in_channel % split != 0:
        raise ValueError(f"{layer}: input channels ({in_channel}) must be divisible by split ({split})")
    if filters % split != 0:
        raise ValueError(f"{layer}: filters ({filters}) must be divisible by split ({split})")

    dtype = inputs.dtype.base_dtype
    W, b = _kernel_and_bias([*ksize, in_channel // split, filters], filters, dtype, use_bias, kernel_initializer,
                            bias_initializer, kernel_regularizer, bias_regularizer)

    if use_native_kernels():
        s4 = [1, 1, *strides] if fmt == "NCHW" else [1, *strides, 1]
        d4 = [1, 1, *dilations] if fmt == "NCHW" else [1, *dilations, 1]
        out = tf.nn.conv2d(inputs, W, strides=s4, padding=pad, data_format=fmt, dilations=d4)
    elif fmt == "NCHW":
        out = U.to_nchw(_conv_nhwc_portable(U.to_nhwc(inputs), W, strides, pad, dilations, split))
    else:
        out = _conv_nhwc_portable(inputs, W, strides, pad, dilations, split)
    if b is not None:
        out = tf.nn.bias_add(out, b, data_format=fmt)
    out = U.finish(out, activation, activity_regularizer)
    return U.set_variables(out, W=W, b=b)


def _deconv_size(size, k, s, pad):
    if size is None:
        return None
    return size * s if pad == "SAME" else size * s + max(k - s, 0)


@layer_register(log_shape=True, positional=("filters", "kernel_size", "strides"), renames=_CONV_RENAMES,
                aliases=("Deconv2D",))
def Conv2DTranspose(inputs, filters, kernel_size, strides=(1, 1), padding="same", data_format="channels_last",
                    activation=None, use_bias=True, kernel_initializer=None, bias_initializer=None,
                    kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None):
    """Transposed 2-D convolution, tensorpack's ``Conv2DTranspose`` (registered as ``Deconv2D`` too).

    Output spatial size: ``in * stride`` ('same') or ``in * stride + max(k - stride, 0)`` ('valid');
    unknown input dimensions stay unknown in the static shape. Arguments as :func:`Conv2D`
    (kernel_initializer's fan_in here is kh * kw * filters, as in tensorpack).

    Returns:
        ``<name>/output``: [N, H', W', filters] (NHWC) or [N, filters, H', W'] (NCHW).

    Variable Names:
        * ``W``: [kh, kw, filters, in_channels]
        * ``b``: [filters] (if use_bias)
    """
    layer = "Conv2DTranspose"
    fmt = U.data_format(layer, data_format)
    pad = U.padding(layer, padding)
    ksize = U.shape2d(layer, "kernel_size", kernel_size)
    strides = U.shape2d(layer, "strides", strides)
    U.positive(layer, "kernel_size", ksize)
    U.positive(layer, "strides", strides)
    if not isinstance(filters, int) or filters <= 0:
        raise ValueError(f"{layer}: filters must be a positive int, got {filters!r}")
    in_channel = U.static_channels(layer, inputs, fmt)
    dtype = inputs.dtype.base_dtype
    W, b = _kernel_and_bias([*ksize, filters, in_channel], filters, dtype, use_bias, kernel_initializer,
                            bias_initializer, kernel_regularizer, bias_regularizer)

    x = inputs if (fmt == "NHWC" or use_native_kernels()) else U.to_nhwc(inputs)
    run_fmt = "NHWC" if x is not inputs or fmt == "NHWC" else "NCHW"
    hw_axes = (1, 2) if run_fmt == "NHWC" else (2, 3)
    dyn = tf.shape(x)
    out_h = dyn[hw_axes[0]] * strides[0] + (0 if pad == "SAME" else max(ksize[0] - strides[0], 0))
    out_w = dyn[hw_axes[1]] * strides[1] + (0 if pad == "SAME" else max(ksize[1] - strides[1], 0))
    if run_fmt == "NHWC":
        out_shape = tf.stack([dyn[0], out_h, out_w, filters])
        s4 = [1, *strides, 1]
    else:
        out_shape = tf.stack([dyn[0], filters, out_h, out_w])
        s4 = [1, 1, *strides]
    out = tf.nn.conv2d_transpose(x, W, out_shape, strides=s4, padding=pad, data_format=run_fmt)
    if run_fmt != fmt:
        out = U.to_nchw(out)
    in_shape = inputs.shape.as_list()
    h_ax, w_ax = (1, 2) if fmt == "NHWC" else (2, 3)
    static = [in_shape[0], None, None, None]
    static[h_ax] = _deconv_size(in_shape[h_ax], ksize[0], strides[0], pad)
    static[w_ax] = _deconv_size(in_shape[w_ax], ksize[1], strides[1], pad)
    static[U.channel_axis(fmt)] = filters
    out.set_shape(static)
    if b is not None:
        out = tf.nn.bias_add(out, b, data_format=fmt)
    out = U.finish(out, activation, activity_regularizer)
    return U.set_variables(out, W=W, b=b)


Deconv2D = Conv2DTranspose

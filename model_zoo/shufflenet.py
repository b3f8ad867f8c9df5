"""``shufflenet-v2``: ShuffleNet V2 (Ma et al. 2018) as in tensorpack's
``examples/ImageNetModels/shufflenet.py --v2``, an ImageNet model with the conventions of
:mod:`model_zoo.imagenet`. Variable names match tensorpack's ``ShuffleNetV2-0.5x.npz`` /
``ShuffleNetV2-1x.npz``::

    conv1   3x3/2, 24, BNReLU           conv1/W, conv1/bn/*      -> [N,112,112,24]
    pool1   max 3x3/2 SAME                                       -> [N,56,56,24]
    stage2  4 units, C0 channels        stage2/block{0..3}/...   -> [N,28,28,C0]
    stage3  8 units, C1 channels        stage3/block{0..7}/...   -> [N,14,14,C1]
    stage4  4 units, C2 channels        stage4/block{0..3}/...   -> [N,7,7,C2]
    conv5   1x1, 1024, BNReLU                                    -> [N,7,7,1024]
    gap, linear 1000                    linear/W, linear/b       -> logits linear/output, prob

with (C0, C1, C2) = (48, 96, 192) for ``ratio=0.5`` and (116, 232, 464) for ``ratio=1.0``.
A unit (``blockB``): stride 1 splits the channels in halves and transforms one half with
``conv1`` (1x1 BNReLU), ``dconv`` (3x3 depthwise) + ``dconv_bn``, ``conv2`` (1x1 BNReLU);
stride 2 (block0) transforms the whole input that way *and* the shortcut with
``shortcut_dconv`` (3x3/2 depthwise) + ``shortcut_dconv_bn`` + ``shortcut_conv`` (1x1 BNReLU);
then concatenation and a channel shuffle with 2 groups. As in tensorpack, block0's shortcut keeps
its input channel count and the main branch makes up the rest (torchvision splits block0's
outputs evenly), so parameter counts differ slightly from torchvision's ShuffleNetV2.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from layers import (
    AvgPooling,
    BatchNorm,
    BNReLU,
    Conv2D,
    FullyConnected,
    GlobalAvgPooling,
    MaxPooling,
    argscope,
    layer_register,
    use_native_kernels,
)

from .imagenet import DATA_FORMATS, INPUT_DTYPES, ImageNetModel, imagenet_zoo_model
from .registry import ArchitectureConfig, check_choice, register
from .spec import ZooModel

__all__ = ["ShuffleNetV2Config", "ShuffleNetV2", "DepthConv", "channel_shuffle", "shufflenet_unit_v2", "CHANNELS"]

tfv1 = tf.compat.v1

#: width multiplier -> output channels of stage2, stage3, stage4 (from the paper)
CHANNELS = {0.5: (48, 96, 192), 1.0: (116, 232, 464)}


@layer_register(log_shape=True, positional=("out_channel", "kernel_shape"))
def DepthConv(x, out_channel, kernel_shape, padding="SAME", stride=1, kernel_initializer=None,
              activation=tf.identity, data_format="channels_last"):
    """Depthwise convolution (tensorpack's shufflenet ``DepthConv``), no bias.

    Args:
        out_channel: a multiple of the input channels (channel multiplier = out / in).
        kernel_shape: int, square kernel. stride: int. padding: 'SAME' or 'VALID'.
        kernel_initializer: default truncated normal, scale 2, fan-in (old name ``W_init``).
        data_format: 'NHWC'/'channels_last' or 'NCHW'/'channels_first' (on CPU NCHW runs as
            transpose -> NHWC depthwise -> transpose, see ``layers.kernel_policy``).

    Returns:
        ``<name>/output``: [N, H/stride, W/stride, out_channel] (NHWC) or NCHW.

    Variable Names:
        * ``W``: [kernel_shape, kernel_shape, in_channel, out_channel / in_channel]
    """
    nchw = data_format in ("NCHW", "channels_first")
    if not nchw and data_format not in ("NHWC", "channels_last"):
        raise ValueError(f"DepthConv: unknown data_format {data_format!r}; expected 'NHWC' or 'NCHW'")
    in_channel = x.shape[1 if nchw else 3]
    if in_channel is None or out_channel % in_channel != 0:
        raise ValueError(f"DepthConv: out_channel ({out_channel}) must be a multiple of the input channels "
                         f"({in_channel})")
    W = tfv1.get_variable("W", [kernel_shape, kernel_shape, in_channel, out_channel // in_channel],
                          initializer=kernel_initializer or tfv1.variance_scaling_initializer(2.0))
    if nchw and use_native_kernels():
        out = tf.nn.depthwise_conv2d(x, W, [1, 1, stride, stride], padding=padding, data_format="NCHW")
    elif nchw:   # CPU kernels have no NCHW depthwise convolution
        out = tf.nn.depthwise_conv2d(tf.transpose(x, [0, 2, 3, 1]), W, [1, stride, stride, 1], padding=padding)
        out = tf.transpose(out, [0, 3, 1, 2])
    else:
        out = tf.nn.depthwise_conv2d(x, W, [1, stride, stride, 1], padding=padding)
    return tf.identity(activation(out), name="output")


def channel_shuffle(x, group, data_format="NHWC"):
    """Interleave ``group`` channel groups: channel ``i * group + j`` -> ``j * (C / group) + i``."""
    with tf.name_scope("channel_shuffle"):
        nchw = data_format == "NCHW"
        shape = x.shape.as_list()
        c = shape[1 if nchw else 3]
        if nchw:
            h, w = shape[2:]
            x = tf.reshape(x, [-1, c // group, group, h, w])
            x = tf.transpose(x, [0, 2, 1, 3, 4])
            return tf.reshape(x, [-1, c, h, w])
        h, w = shape[1:3]
        x = tf.reshape(x, [-1, h, w, c // group, group])
        x = tf.transpose(x, [0, 1, 2, 4, 3])
        return tf.reshape(x, [-1, h, w, c])


def shufflenet_unit_v2(name, x, out_channel, stride, data_format):
    ch_axis = 1 if data_format == "NCHW" else 3
    with tfv1.variable_scope(name):
        if stride == 1:
            shortcut, x = tf.split(x, 2, axis=ch_axis)
        else:
            shortcut = x
        shortcut_channel = int(shortcut.shape[ch_axis])

        x = Conv2D("conv1", x, out_channel // 2, 1, activation=BNReLU)
        x = DepthConv("dconv", x, out_channel // 2, 3, stride=stride)
        x = BatchNorm("dconv_bn", x)
        x = Conv2D("conv2", x, out_channel - shortcut_channel, 1, activation=BNReLU)
        if stride == 2:
            shortcut = DepthConv("shortcut_dconv", shortcut, shortcut_channel, 3, stride=2)
            shortcut = BatchNorm("shortcut_dconv_bn", shortcut)
            shortcut = Conv2D("shortcut_conv", shortcut, shortcut_channel, 1, activation=BNReLU)
        out = tf.concat([shortcut, x], axis=ch_axis)             # out_channel channels
        return channel_shuffle(out, 2, data_format)


def shufflenet_stage(name, x, channel, num_blocks, data_format):
    with tfv1.variable_scope(name):
        for i in range(num_blocks):
            x = shufflenet_unit_v2(f"block{i}", x, channel, 2 if i == 0 else 1, data_format)
    return x


@register("shufflenet-v2")
@dataclasses.dataclass(frozen=True)
class ShuffleNetV2Config(ArchitectureConfig):
    """Options of ``shufflenet-v2``.

    Attributes:
        ratio: width multiplier, 0.5 or 1.0 (tensorpack's ``--ratio``; zoo files
            ShuffleNetV2-0.5x / -1x). Default 1.0.
        data_format: ``'NHWC'`` (default; fastest on CPU) or ``'NCHW'`` (tensorpack's layout).
        input_dtype: ``'uint8'`` (default) or ``'float32'``.
    """

    ratio: float = 1.0
    data_format: str = "NHWC"
    input_dtype: str = "uint8"

    def __post_init__(self):
        check_choice(self, "ratio", tuple(CHANNELS))
        check_choice(self, "data_format", DATA_FORMATS)
        check_choice(self, "input_dtype", INPUT_DTYPES)

    def build(self) -> ZooModel:
        return imagenet_zoo_model(self, ShuffleNetV2(self))


class ShuffleNetV2(ImageNetModel):
    """The ModelDesc of ``shufflenet-v2`` (see the module docstring)."""

    weight_decay = 4e-5
    learning_rate = 0.5

    def __init__(self, config: ShuffleNetV2Config | None = None):
        self.config = config or ShuffleNetV2Config()
        super().__init__(self.config.data_format, self.config.input_dtype)
        self.channels = CHANNELS[float(self.config.ratio)]

    def get_logits(self, image):
        fmt = self.data_format
        with argscope([Conv2D, MaxPooling, AvgPooling, GlobalAvgPooling, BatchNorm, DepthConv], data_format=fmt), \
                argscope(Conv2D, use_bias=False):
            x = Conv2D("conv1", image, 24, 3, strides=2, activation=BNReLU)  # (N, 112, 112, 24)
            x = MaxPooling("pool1", x, 3, 2, padding="SAME")                 # (N, 56, 56, 24)
            x = shufflenet_stage("stage2", x, self.channels[0], 4, fmt)      # (N, 28, 28, C0)
            x = shufflenet_stage("stage3", x, self.channels[1], 8, fmt)      # (N, 14, 14, C1)
            x = shufflenet_stage("stage4", x, self.channels[2], 4, fmt)      # (N, 7, 7, C2)
            x = Conv2D("conv5", x, 1024, 1, activation=BNReLU)               # (N, 7, 7, 1024)
            x = GlobalAvgPooling("gap", x)                                   # (N, 1024)
            return FullyConnected("linear", x, 1000)                         # (N, 1000)

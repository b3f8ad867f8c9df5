"""``imagenet-resnet``: tensorpack's ``examples/ResNet/imagenet-resnet.py`` + ``resnet_model.py``.

Variable names are those of tensorpack's model-zoo files (``ImageNet-ResNet50.npz`` etc.), so
they load without renaming::

    image_preprocess (see model_zoo.imagenet)           [N,224,224,3]
    conv0   7x7/2, 64, BNReLU      conv0/W, conv0/bn/*  -> [N,112,112,64]
    pool0   max 3x3/2 SAME                              -> [N,56,56,64]
    group0 .. group3               groupG/blockB/...    -> 56, 28, 14, 7 spatially
    gap     global average pooling                      -> [N,512] or [N,2048]
    linear  1000                   linear/W, linear/b   -> logits linear/output, softmax prob

Blocks (``resnet`` mode; BN after every conv, ReLU after the sum):

* basic (18, 34): ``conv1`` 3x3 (strided) BNReLU, ``conv2`` 3x3 BN (zero-init gamma);
* bottleneck (50, 101, 152): ``conv1`` 1x1 BNReLU, ``conv2`` 3x3 (strided, as fb.resnet.torch)
  BNReLU, ``conv3`` 1x1 to 4x channels, BN (zero-init gamma);
* the shortcut is ``convshortcut`` (1x1, strided) + BN where the channel count changes.

``preact`` mode (He et al. 2016b) puts ``preact`` BNReLU before every block but the first of a
group and ends each group with ``bnlast``; ``se`` mode (depth >= 50) adds squeeze-and-excitation
(``fc1``: 4C -> C/4, ``fc2``: C/4 -> 4C, per bottleneck). Convolutions have no bias and use a
fan-out truncated normal initialiser; ``linear/W`` is normal(0, 0.01).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from layers import (
    BatchNorm,
    BNReLU,
    Conv2D,
    FullyConnected,
    GlobalAvgPooling,
    MaxPooling,
    argscope,
    get_arg_scope,
)

from .imagenet import DATA_FORMATS, INPUT_DTYPES, ImageNetModel, imagenet_zoo_model
from .registry import ArchitectureConfig, check_choice, register
from .spec import ZooModel

__all__ = ["ImageNetResNetConfig", "ImageNetResNet", "resnet_backbone", "resnet_group", "preresnet_group",
           "resnet_basicblock", "resnet_bottleneck", "se_resnet_bottleneck", "preresnet_basicblock",
           "preresnet_bottleneck", "BLOCKS", "MODES"]

tfv1 = tf.compat.v1

#: depth -> blocks per group
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
MODES = ("resnet", "preact", "se")


def _channel_axis() -> int:
    fmt = get_arg_scope()["Conv2D"].get("data_format", "NHWC")
    return 1 if fmt in ("NCHW", "channels_first") else 3


def resnet_shortcut(x, n_out, stride, activation=tf.identity):
    """Identity, or ``convshortcut`` (1x1, strided) when the channel count changes."""
    n_in = x.shape[_channel_axis()]
    if n_in != n_out:
        return Conv2D("convshortcut", x, n_out, 1, strides=stride, activation=activation)
    return x


def get_bn(zero_init=False):
    """A BatchNorm activation (``<conv>/bn``); zero-init gamma for a block's last BN
    (Goyal et al. 2017)."""
    if zero_init:
        return lambda x: BatchNorm("bn", x, gamma_initializer=tfv1.zeros_initializer())
    return lambda x: BatchNorm("bn", x)


def apply_preactivation(x, preact):
    shortcut = x                                                # keep the identity path un-activated
    if preact == "bnrelu":
        x = BNReLU("preact", x)
    return x, shortcut


def preresnet_basicblock(x, ch_out, stride, preact):
    x, shortcut = apply_preactivation(x, preact)
    x = Conv2D("conv1", x, ch_out, 3, strides=stride, activation=BNReLU)
    x = Conv2D("conv2", x, ch_out, 3)
    return x + resnet_shortcut(shortcut, ch_out, stride)


def preresnet_bottleneck(x, ch_out, stride, preact):
    x, shortcut = apply_preactivation(x, preact)
    x = Conv2D("conv1", x, ch_out, 1, activation=BNReLU)
    x = Conv2D("conv2", x, ch_out, 3, strides=stride, activation=BNReLU)
    x = Conv2D("conv3", x, ch_out * 4, 1)
    return x + resnet_shortcut(shortcut, ch_out * 4, stride)


def preresnet_group(name, x, block_func, features, count, stride):
    with tfv1.variable_scope(name):
        for i in range(count):
            with tfv1.variable_scope(f"block{i}"):
                # the group's input is already activated (conv0's BNReLU or the previous bnlast)
                x = block_func(x, features, stride if i == 0 else 1, "no_preact" if i == 0 else "bnrelu")
        x = BNReLU("bnlast", x)
    return x


def resnet_basicblock(x, ch_out, stride):
    shortcut = x
    x = Conv2D("conv1", x, ch_out, 3, strides=stride, activation=BNReLU)
    x = Conv2D("conv2", x, ch_out, 3, activation=get_bn(zero_init=True))
    out = x + resnet_shortcut(shortcut, ch_out, stride, activation=get_bn(zero_init=False))
    return tf.nn.relu(out)


def resnet_bottleneck(x, ch_out, stride):
    shortcut = x
    x = Conv2D("conv1", x, ch_out, 1, activation=BNReLU)
    x = Conv2D("conv2", x, ch_out, 3, strides=stride, activation=BNReLU)  # stride on the 3x3 (fb.resnet.torch)
    x = Conv2D("conv3", x, ch_out * 4, 1, activation=get_bn(zero_init=True))
    out = x + resnet_shortcut(shortcut, ch_out * 4, stride, activation=get_bn(zero_init=False))
    return tf.nn.relu(out)


def se_resnet_bottleneck(x, ch_out, stride):
    shortcut = x
    x = Conv2D("conv1", x, ch_out, 1, activation=BNReLU)
    x = Conv2D("conv2", x, ch_out, 3, strides=stride, activation=BNReLU)
    x = Conv2D("conv3", x, ch_out * 4, 1, activation=get_bn(zero_init=True))
    squeeze = GlobalAvgPooling("gap", x)                                    # (N, 4C)
    squeeze = FullyConnected("fc1", squeeze, ch_out // 4, activation=tf.nn.relu)
    squeeze = FullyConnected("fc2", squeeze, ch_out * 4, activation=tf.nn.sigmoid)
    shape = [-1, 1, 1, 1]
    shape[_channel_axis()] = ch_out * 4
    x = x * tf.reshape(squeeze, shape)                                      # channel-wise gate
    out = x + resnet_shortcut(shortcut, ch_out * 4, stride, activation=get_bn(zero_init=False))
    return tf.nn.relu(out)


def resnet_group(name, x, block_func, features, count, stride):
    with tfv1.variable_scope(name):
        for i in range(count):
            with tfv1.variable_scope(f"block{i}"):
                x = block_func(x, features, stride if i == 0 else 1)
    return x


def resnet_backbone(image, num_blocks, group_func, block_func):
    """conv0 -> pool0 -> group0..3 -> gap -> linear (1000 logits)."""
    with argscope(Conv2D, use_bias=False,
                  kernel_initializer=tfv1.variance_scaling_initializer(scale=2.0, mode="fan_out")):
        # SAME padding with an even input pads 2 before / 3 after (TF's convention), as tensorpack.
        x = Conv2D("conv0", image, 64, 7, strides=2, activation=BNReLU)     # (N, 112, 112, 64)
        x = MaxPooling("pool0", x, pool_size=3, strides=2, padding="SAME")  # (N, 56, 56, 64)
        x = group_func("group0", x, block_func, 64, num_blocks[0], 1)       # (N, 56, 56, 64|256)
        x = group_func("group1", x, block_func, 128, num_blocks[1], 2)      # (N, 28, 28, 128|512)
        x = group_func("group2", x, block_func, 256, num_blocks[2], 2)      # (N, 14, 14, 256|1024)
        x = group_func("group3", x, block_func, 512, num_blocks[3], 2)      # (N, 7, 7, 512|2048)
        x = GlobalAvgPooling("gap", x)                                      # (N, 512|2048)
        return FullyConnected("linear", x, 1000,
                              kernel_initializer=tfv1.random_normal_initializer(stddev=0.01))


@register("imagenet-resnet")
@dataclasses.dataclass(frozen=True)
class ImageNetResNetConfig(ArchitectureConfig):
    """Options of ``imagenet-resnet``.

    Attributes:
        depth: 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks). Default 50.
        mode: ``'resnet'`` (default; the model-zoo ResNets), ``'preact'`` or ``'se'`` (depth >= 50).
        data_format: ``'NHWC'`` (default; fastest on CPU) or ``'NCHW'`` (tensorpack's training
            layout on GPUs). Variables are layout-independent: zoo files load with either.
        input_dtype: ``'uint8'`` (default, tensorpack's ``image_dtype``) or ``'float32'``.
    """

    depth: int = 50
    mode: str = "resnet"
    data_format: str = "NHWC"
    input_dtype: str = "uint8"

    def __post_init__(self):
        check_choice(self, "depth", tuple(BLOCKS))
        check_choice(self, "mode", MODES)
        check_choice(self, "data_format", DATA_FORMATS)
        check_choice(self, "input_dtype", INPUT_DTYPES)
        if self.mode == "se" and self.depth < 50:
            raise ValueError(f"{self.architecture}: mode='se' needs bottleneck blocks; invalid depth={self.depth}; "
                             "valid choices with mode='se': 50, 101, 152")

    def build(self) -> ZooModel:
        return imagenet_zoo_model(self, ImageNetResNet(self))


class ImageNetResNet(ImageNetModel):
    """The ModelDesc of ``imagenet-resnet`` (see the module docstring)."""

    def __init__(self, config: ImageNetResNetConfig | None = None):
        self.config = config or ImageNetResNetConfig()
        super().__init__(self.config.data_format, self.config.input_dtype)
        mode, depth = self.config.mode, self.config.depth
        basic = preresnet_basicblock if mode == "preact" else resnet_basicblock
        bottleneck = {"resnet": resnet_bottleneck, "preact": preresnet_bottleneck,
                      "se": se_resnet_bottleneck}[mode]
        self.num_blocks = BLOCKS[depth]
        self.block_func = basic if depth < 50 else bottleneck
        self.group_func = preresnet_group if mode == "preact" else resnet_group

    def get_logits(self, image):
        with argscope([Conv2D, MaxPooling, GlobalAvgPooling, BatchNorm], data_format=self.data_format):
            return resnet_backbone(image, self.num_blocks, self.group_func, self.block_func)

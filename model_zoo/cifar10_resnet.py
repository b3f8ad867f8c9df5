"""``cifar10-resnet``: tensorpack's ``examples/ResNet/cifar10-resnet.py`` (pre-activation ResNet,
He et al. 2016, "Identity Mappings in Deep Residual Networks") for 32x32 images.

Structure (n residual units per stage, depth = 6n + 2)::

    input / 128                            [N,32,32,3]
    conv0    3x3, 16, BNReLU               -> [N,32,32,16]     conv0/W, conv0/bn/*
    res1.0 .. res1.{n-1}   16 channels     -> [N,32,32,16]
    res2.0 .. res2.{n-1}   32 channels     -> [N,16,16,32]     (res2.0 strides 2)
    res3.0 .. res3.{n-1}   64 channels     -> [N,8,8,64]       (res3.0 strides 2)
    bnlast   BNReLU                        bnlast/bn/*
    gap      global average pooling        -> [N,64]
    linear   10                            -> [N,10] logits (linear/output); softmax ``output``

A unit ``resS.k``: ``bn`` + ReLU (skipped in res1.0, whose input is already activated), ``conv1``
(3x3, BNReLU, variables ``conv1/W`` + ``conv1/bn/*``), ``conv2`` (3x3, no BN), plus the shortcut:
identity, or for the first unit of stages 2 and 3 a 2x2 average pooling ``pool`` and zero
padding of the channels (no parameters). Convolutions have no bias; kernels are initialised
with a fan-out truncated normal (scale 2).

Input: float32 ``[N, 32, 32, 3]`` RGB with the training set's per-pixel mean subtracted
(tensorpack does that in its DataFlow, outside the graph); the graph divides by 128.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from layers import AvgPooling, BatchNorm, BNReLU, Conv2D, FullyConnected, GlobalAvgPooling, argscope

from . import labels as L
from . import preprocess as P
from .base import ClassifierModel
from .registry import ArchitectureConfig, check_choice, check_range, register
from .spec import InputSpec, OutputSpec, ZooModel

__all__ = ["Cifar10ResNetConfig", "Cifar10ResNet", "DEPTHS"]

tfv1 = tf.compat.v1

#: depth -> units per stage (depth = 6n + 2). 14 (n=2) is the size of the test fixture.
DEPTHS = {14: 2, 20: 3, 32: 5, 44: 7, 56: 9, 110: 18}

PREPROCESSING = (
    "resize to 32x32 (box filter when shrinking, bilinear when enlarging), keep RGB order, "
    "convert to float32 and subtract the CIFAR-10 training-set channel means "
    f"{tuple(P.CIFAR10_MEAN_RGB)} (tensorpack subtracts the per-pixel mean image, which is "
    "not shipped; the channel means approximate it). The graph divides by 128.")


@register("cifar10-resnet")
@dataclasses.dataclass(frozen=True)
class Cifar10ResNetConfig(ArchitectureConfig):
    """Options of ``cifar10-resnet``.

    Attributes:
        depth: 6n + 2 with n units per stage; one of 14, 20, 32, 44, 56, 110. Default 110
            (n = 18, the default of tensorpack's cifar10-resnet.py).
        data_format: ``'NHWC'`` (default; fastest on CPU) or ``'NCHW'`` (what tensorpack trains
            with on GPUs). Variables are the same in both, so checkpoints load either way.
        weight_decay: L2 factor on every ``W`` (2e-4, tensorpack's initial value).
    """

    depth: int = 110
    data_format: str = "NHWC"
    weight_decay: float = 2e-4

    def __post_init__(self):
        check_choice(self, "depth", tuple(DEPTHS))
        check_choice(self, "data_format", ("NHWC", "NCHW"))
        check_range(self, "weight_decay", 0.0, 1.0)

    def build(self) -> ZooModel:
        return ZooModel(
            architecture=self.architecture,
            config=self,
            model=Cifar10ResNet(self),
            inputs=(InputSpec("input", "float32", (32, 32, 3),
                              (-max(P.CIFAR10_MEAN_RGB), 255.0 - min(P.CIFAR10_MEAN_RGB)), "RGB",
                              "32x32 RGB pixels (0-255) minus the training-set mean"),),
            outputs=(OutputSpec("prob", "output:0", "softmax over the 10 CIFAR-10 classes"),
                     OutputSpec("logits", "linear/output:0", "pre-softmax scores")),
            labels=L.CIFAR10,
            preprocessing=PREPROCESSING,
            _preprocess=_preprocess,
        )


def _preprocess(rgb: np.ndarray) -> np.ndarray:
    img = P.fit_size(rgb.astype(np.float32), (32, 32))       # (32, 32, 3)
    return (img - np.asarray(P.CIFAR10_MEAN_RGB, np.float32)).astype(np.float32)


class Cifar10ResNet(ClassifierModel):
    """The ModelDesc of ``cifar10-resnet`` (see the module docstring)."""

    input_dtype = tf.float32
    input_shape = (32, 32, 3)
    prob_name = "output"
    learning_rate = 0.1
    use_nesterov = False

    def __init__(self, config: Cifar10ResNetConfig | None = None):
        self.config = config or Cifar10ResNetConfig()
        self.n = DEPTHS[self.config.depth]
        self.data_format = self.config.data_format
        self.weight_decay = self.config.weight_decay

    def get_logits(self, image):
        image = image / 128.0
        nchw = self.data_format == "NCHW"
        if nchw:
            image = tf.transpose(image, [0, 3, 1, 2])
        ch_axis = 1 if nchw else 3

        def residual(name, x, increase_dim=False, first=False):
            in_channel = x.shape[ch_axis]
            out_channel, stride1 = (in_channel * 2, 2) if increase_dim else (in_channel, 1)
            with tfv1.variable_scope(name):
                b1 = x if first else BNReLU(x)                  # pre-activation: <name>/bn
                c1 = Conv2D("conv1", b1, out_channel, strides=stride1, activation=BNReLU)
                c2 = Conv2D("conv2", c1, out_channel)
                if increase_dim:
                    x = AvgPooling("pool", x, 2)                # (N, H/2, W/2, C) spatially
                    pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
                    pad[ch_axis] = [in_channel // 2, in_channel // 2]
                    x = tf.pad(x, pad)                          # zero channels: C -> 2C
                return c2 + x

        with argscope([Conv2D, AvgPooling, BatchNorm, GlobalAvgPooling], data_format=self.data_format), \
                argscope(Conv2D, use_bias=False, kernel_size=3,
                         kernel_initializer=tfv1.variance_scaling_initializer(scale=2.0, mode="fan_out")):
            x = Conv2D("conv0", image, 16, activation=BNReLU)  # (N, 32, 32, 16)
            x = residual("res1.0", x, first=True)
            for k in range(1, self.n):
                x = residual(f"res1.{k}", x)                    # (N, 32, 32, 16)
            x = residual("res2.0", x, increase_dim=True)
            for k in range(1, self.n):
                x = residual(f"res2.{k}", x)                    # (N, 16, 16, 32)
            x = residual("res3.0", x, increase_dim=True)
            for k in range(1, self.n):
                x = residual(f"res3.{k}", x)                    # (N, 8, 8, 64)
            x = BNReLU("bnlast", x)
            x = GlobalAvgPooling("gap", x)                      # (N, 64)
            return FullyConnected("linear", x, 10)              # (N, 10)

"""Small reusable test networks: the two fixture models (tests/fixtures/README.md) as ModelDescs.

``MnistLinearWrap`` is the "Symbolic Layers" tutorial network (fixture ``mnist_linearwrap``);
``CifarResNet(n)`` is tensorpack's examples/ResNet/cifar10-resnet.py network, channels_last
(fixture ``resnet_cifar`` is n=2; n=3 is ResNet-20). ``TinyNet`` is a 2-layer model for fast tests.
"""
from __future__ import annotations

import os

import tensorflow as tf

from layers import (
    AvgPooling,
    BatchNorm,
    BNReLU,
    Conv2D,
    FullyConnected,
    GlobalAvgPooling,
    LinearWrap,
    ModelDesc,
    argscope,
)

tfv1 = tf.compat.v1

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures")


def fixture(name: str) -> str:
    """Path of a file in tests/fixtures."""
    return os.path.normpath(os.path.join(FIXTURES, name))


def session_config():
    """Two threads per pool: the CI machine has 2 cores shared with other jobs."""
    return tfv1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)


class MnistLinearWrap(ModelDesc):
    """input [None,28,28,1] float32 -> logits ``fc1/output`` [None, 10]."""

    def inputs(self):
        return [tf.TensorSpec([None, 28, 28, 1], tf.float32, "input")]

    def build_graph(self, image):
        with argscope(Conv2D, filters=32, kernel_size=3, activation=tf.nn.relu):
            return (LinearWrap(image)
                    .Conv2D("conv0")
                    .MaxPooling("pool0", 2)
                    .Conv2D("conv1", padding="SAME")
                    .Conv2D("conv2", kernel_size=5)
                    .FullyConnected("fc0", 512, activation=tf.nn.relu)
                    .Dropout("dropout", rate=0.5)
                    .tf.multiply(0.5)
                    .FullyConnected("fc1", units=10, activation=tf.identity)())


class CifarResNet(ModelDesc):
    """input [None,32,32,3] float32 -> ``linear/output`` logits and softmax ``output``; 6n+2 layers."""

    def __init__(self, n: int = 2):
        self.n = n

    def inputs(self):
        return [tf.TensorSpec([None, 32, 32, 3], tf.float32, "input")]

    def build_graph(self, image):
        image = image / 128.0

        def residual(name, x, increase_dim=False, first=False):
            in_channel = x.shape[3]
            out_channel, stride1 = (in_channel * 2, 2) if increase_dim else (in_channel, 1)
            with tfv1.variable_scope(name):
                b1 = x if first else BNReLU(x)
                c1 = Conv2D("conv1", b1, out_channel, strides=stride1, activation=BNReLU)
                c2 = Conv2D("conv2", c1, out_channel)
                if increase_dim:
                    x = AvgPooling("pool", x, 2)
                    x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [in_channel // 2, in_channel // 2]])
                return c2 + x

        with argscope(Conv2D, use_bias=False, kernel_size=3,
                      kernel_initializer=tfv1.variance_scaling_initializer(scale=2.0, mode="fan_out")):
            x = Conv2D("conv0", image, 16, activation=BNReLU)
            x = residual("res1.0", x, first=True)
            for k in range(1, self.n):
                x = residual(f"res1.{k}", x)
            x = residual("res2.0", x, increase_dim=True)
            for k in range(1, self.n):
                x = residual(f"res2.{k}", x)
            x = residual("res3.0", x, increase_dim=True)
            for k in range(1, self.n):
                x = residual(f"res3.{k}", x)
            x = BNReLU("bnlast", x)
            x = GlobalAvgPooling("gap", x)
        logits = FullyConnected("linear", x, 10)
        return tf.nn.softmax(logits, name="output")


class TinyNet(ModelDesc):
    """input [None,4,4,2] float32 -> conv (3 ch) + BatchNorm -> ``fc/output`` [None, 3]; 8 variables."""

    def inputs(self):
        return [tf.TensorSpec([None, 4, 4, 2], tf.float32, "input")]

    def build_graph(self, x):
        x = Conv2D("conv", x, 3, 3, activation=tf.nn.relu)
        x = BatchNorm("bn", x)
        return FullyConnected("fc", x, 3)

"""``mnist-convnet``: the network of tensorpack's "Symbolic Layers" tutorial, fed the way
``examples/basics/mnist-convnet.py`` feeds it.

tensorpack ships two small MNIST convnets. The tutorial's (docs/tutorial/symbolic.md) is the one
with ~3.3M parameters, and it is this one::

    conv0  3x3, 32, relu      [N,28,28,1]  -> [N,28,28,32]       W 3x3x1x32    (320 params)
    pool0  max 2x2            -> [N,14,14,32]
    conv1  3x3, 32, relu      -> [N,14,14,32]                    W 3x3x32x32   (9,248)
    conv2  5x5, 32, relu      -> [N,14,14,32]                    W 5x5x32x32   (25,632)
    fc0    512, relu          -> [N,512]                         W 6272x512    (3,211,776)
    dropout rate 0.5, then tf.multiply(0.5)
    fc1    10                 -> [N,10] logits                   W 512x10      (5,130)
                                                                 total 3,252,106

(``examples/basics/mnist-convnet.py`` adds ``pool1`` and ``conv3`` before ``fc0``; that one has
~0.84M parameters.) As in mnist-convnet.py the input is ``input`` float32 ``[N, 28, 28]`` in
[0, 1]; the graph adds the channel axis and maps pixels to [-1, 1] (``x * 2 - 1``). Outputs:
``prob`` (softmax) and the logits ``fc1/output``. Weight decay 1e-5 on ``fc.*/W``, Adam 1e-3,
both as in mnist-convnet.py.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from layers import Conv2D, LinearWrap, argscope

from . import labels as L
from . import preprocess as P
from .base import ClassifierModel
from .registry import ArchitectureConfig, check_range, register
from .spec import InputSpec, OutputSpec, ZooModel

__all__ = ["MnistConvNetConfig", "MnistConvNet", "IMAGE_SIZE"]

IMAGE_SIZE = 28

PREPROCESSING = (
    "RGB -> grayscale (BT.601 luma), resize to 28x28 (box filter when shrinking, bilinear when "
    "enlarging), scale to [0, 1] (pixel / 255). MNIST convention: bright strokes on a dark "
    "background; invert dark-on-light images before sending them.")


@register("mnist-convnet")
@dataclasses.dataclass(frozen=True)
class MnistConvNetConfig(ArchitectureConfig):
    """Options of ``mnist-convnet``.

    Attributes:
        dropout_rate: probability to *drop* an fc0 unit while training (0.5, as in the tutorial).
        weight_decay: L2 factor on ``fc.*/W`` (1e-5, as mnist-convnet.py).
    """

    dropout_rate: float = 0.5
    weight_decay: float = 1e-5

    def __post_init__(self):
        check_range(self, "dropout_rate", 0.0, 0.95)
        check_range(self, "weight_decay", 0.0, 1.0)

    def build(self) -> ZooModel:
        return ZooModel(
            architecture=self.architecture,
            config=self,
            model=MnistConvNet(self),
            inputs=(InputSpec("input", "float32", (IMAGE_SIZE, IMAGE_SIZE), (0.0, 1.0), "gray",
                              "28x28 grayscale, 0 = background, 1 = ink"),),
            outputs=(OutputSpec("prob", "prob:0", "softmax over the 10 digits"),
                     OutputSpec("logits", "fc1/output:0", "pre-softmax scores")),
            labels=L.DIGITS,
            preprocessing=PREPROCESSING,
            _preprocess=_preprocess,
        )


def _preprocess(rgb: np.ndarray) -> np.ndarray:
    gray = P.rgb_to_gray(rgb)                                  # (H, W) 0-255
    gray = P.fit_size(gray, (IMAGE_SIZE, IMAGE_SIZE))          # (28, 28)
    return np.clip(gray / 255.0, 0.0, 1.0).astype(np.float32)


class MnistConvNet(ClassifierModel):
    """The ModelDesc of ``mnist-convnet`` (see the module docstring)."""

    input_dtype = tf.float32
    input_shape = (IMAGE_SIZE, IMAGE_SIZE)
    weight_decay_pattern = "fc.*/W"
    learning_rate = 1e-3
    optimizer_kind = "adam"

    def __init__(self, config: MnistConvNetConfig | None = None):
        self.config = config or MnistConvNetConfig()
        self.weight_decay = self.config.weight_decay

    def get_logits(self, image):
        image = tf.expand_dims(image, 3)                       # (N, 28, 28, 1)
        image = image * 2 - 1                                  # centre the pixels at zero
        with argscope(Conv2D, kernel_size=3, activation=tf.nn.relu, filters=32):
            logits = (LinearWrap(image)
                      .Conv2D("conv0")                         # (N, 28, 28, 32)
                      .MaxPooling("pool0", 2)                  # (N, 14, 14, 32)
                      .Conv2D("conv1", padding="SAME")         # (N, 14, 14, 32)
                      .Conv2D("conv2", kernel_size=5)          # (N, 14, 14, 32)
                      .FullyConnected("fc0", 512, activation=tf.nn.relu)   # (N, 512)
                      .Dropout("dropout", rate=self.config.dropout_rate)
                      .tf.multiply(0.5)
                      .FullyConnected("fc1", 10, activation=tf.identity)())  # (N, 10)
        return logits

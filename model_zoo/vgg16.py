"""``vgg16``: tensorpack's ``examples/ImageNetModels/vgg16.py`` (Simonyan & Zisserman 2015,
configuration D), an ImageNet model with the conventions of :mod:`model_zoo.imagenet`.

Thirteen 3x3 convolutions with bias (``conv1_1`` .. ``conv5_3``, each followed by ReLU
``convX_Y_relu``, optionally a BatchNorm ``convX_Y_bn`` before it), five 2x2 max-poolings
(``pool1`` .. ``pool5``), then ``fc6`` 4096 + ReLU + dropout ``drop0``, ``fc7`` 4096 + ReLU +
dropout ``drop1``, ``fc8`` 1000 (logits ``fc8/output``, softmax ``prob``)::

    [N,224,224,3] -> conv1 -> [N,112,112,64] -> conv2 -> [N,56,56,128] -> conv3 -> [N,28,28,256]
    -> conv4 -> [N,14,14,512] -> conv5 -> [N,7,7,512] -> fc6 [N,4096] -> fc7 [N,4096] -> fc8 [N,1000]

138,357,544 parameters without BatchNorm. tensorpack trains it NCHW, so ``fc6/W`` expects its
25088 inputs in C,H,W order; with ``data_format='NHWC'`` the feature map is transposed to NCHW
before ``fc6`` so the same weights work in both layouts.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from layers import BatchNorm, Conv2D, LinearWrap, MaxPooling, argscope

from .imagenet import DATA_FORMATS, INPUT_DTYPES, ImageNetModel, imagenet_zoo_model
from .registry import ArchitectureConfig, check_choice, register
from .spec import ZooModel

__all__ = ["VGG16Config", "VGG16"]

tfv1 = tf.compat.v1

NORMS = ("none", "bn")


@register("vgg16")
@dataclasses.dataclass(frozen=True)
class VGG16Config(ArchitectureConfig):
    """Options of ``vgg16``.

    Attributes:
        norm: ``'none'`` (default, the original VGG16) or ``'bn'`` (BatchNorm after every conv,
            tensorpack's ``--norm bn``).
        data_format: ``'NHWC'`` (default; fastest on CPU) or ``'NCHW'``.
        input_dtype: ``'uint8'`` (default) or ``'float32'``.
    """

    norm: str = "none"
    data_format: str = "NHWC"
    input_dtype: str = "uint8"

    def __post_init__(self):
        check_choice(self, "norm", NORMS)
        check_choice(self, "data_format", DATA_FORMATS)
        check_choice(self, "input_dtype", INPUT_DTYPES)

    def build(self) -> ZooModel:
        return imagenet_zoo_model(self, VGG16(self), logits_tensor="fc8/output:0")


class VGG16(ImageNetModel):
    """The ModelDesc of ``vgg16`` (see the module docstring)."""

    weight_decay = 5e-4
    learning_rate = 0.01

    def __init__(self, config: VGG16Config | None = None):
        self.config = config or VGG16Config()
        super().__init__(self.config.data_format, self.config.input_dtype)

    def _convnormrelu(self, x, name, chan):
        x = Conv2D(name, x, chan, 3)
        if self.config.norm == "bn":
            x = BatchNorm(name + "_bn", x)
        return tf.nn.relu(x, name=name + "_relu")

    def _to_nchw(self, x):
        # fc6's weights are laid out for a C,H,W flatten (tensorpack trains NCHW)
        return x if self.data_format == "NCHW" else tf.transpose(x, [0, 3, 1, 2])

    def get_logits(self, image):
        cnr = self._convnormrelu
        with argscope(Conv2D, kernel_initializer=tfv1.variance_scaling_initializer(scale=2.0)), \
                argscope([Conv2D, MaxPooling, BatchNorm], data_format=self.data_format):
            return (LinearWrap(image)
                    .apply(cnr, "conv1_1", 64)
                    .apply(cnr, "conv1_2", 64)
                    .MaxPooling("pool1", 2)                    # 112
                    .apply(cnr, "conv2_1", 128)
                    .apply(cnr, "conv2_2", 128)
                    .MaxPooling("pool2", 2)                    # 56
                    .apply(cnr, "conv3_1", 256)
                    .apply(cnr, "conv3_2", 256)
                    .apply(cnr, "conv3_3", 256)
                    .MaxPooling("pool3", 2)                    # 28
                    .apply(cnr, "conv4_1", 512)
                    .apply(cnr, "conv4_2", 512)
                    .apply(cnr, "conv4_3", 512)
                    .MaxPooling("pool4", 2)                    # 14
                    .apply(cnr, "conv5_1", 512)
                    .apply(cnr, "conv5_2", 512)
                    .apply(cnr, "conv5_3", 512)
                    .MaxPooling("pool5", 2)                    # 7: (N, 7, 7, 512) or (N, 512, 7, 7)
                    .apply(self._to_nchw)                      # (N, 512, 7, 7)
                    .FullyConnected("fc6", 4096, kernel_initializer=tfv1.random_normal_initializer(stddev=0.001))
                    .tf.nn.relu(name="fc6_relu")
                    .Dropout("drop0", rate=0.5)
                    .FullyConnected("fc7", 4096, kernel_initializer=tfv1.random_normal_initializer(stddev=0.001))
                    .tf.nn.relu(name="fc7_relu")
                    .Dropout("drop1", rate=0.5)
                    .FullyConnected("fc8", 1000,
                                    kernel_initializer=tfv1.random_normal_initializer(stddev=0.01))())  # (N, 1000)

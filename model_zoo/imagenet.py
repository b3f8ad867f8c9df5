"""What every ImageNet model of the zoo shares: tensorpack's ``ImageNetModel`` input convention
(``examples/ImageNetModels/imagenet_utils.py``) and its evaluation preprocessing.

* Input ``input``: ``[N, 224, 224, 3]`` **BGR** pixels 0-255, uint8 by default (tensorpack's
  ``image_dtype``; its published models were trained with float32 input, which ``input_dtype=
  'float32'`` gives).
* In the graph, name scope ``image_preprocess``: cast to float32, subtract the mean
  ``[0.485, 0.456, 0.406] * 255`` and divide by the std ``[0.229, 0.224, 0.225] * 255`` (both
  reversed for BGR), then transpose to NCHW when ``data_format='NCHW'``.
* Outputs ``prob`` (softmax) and the logits ``linear/output`` (``fc8/output`` for VGG16).
* Evaluation preprocessing outside the graph (tensorpack's ``fbresnet_augmentor(False)``):
  resize the shortest edge to 256 with bicubic interpolation, centre-crop 224x224, RGB -> BGR.
* Labels: ``class_0`` .. ``class_999`` (no synset list offline; see :mod:`model_zoo.labels`).
* Training defaults: weight decay 1e-4 on ``.*/W``, momentum 0.9 with Nesterov, lr 0.1.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from . import labels as L
from . import preprocess as P
from .base import ClassifierModel
from .spec import InputSpec, OutputSpec, ZooModel

__all__ = ["ImageNetModel", "imagenet_zoo_model", "imagenet_preprocess", "IMAGE_SIZE", "INPUT_DTYPES",
           "DATA_FORMATS", "PREPROCESSING"]

IMAGE_SIZE = 224
INPUT_DTYPES = ("uint8", "float32")
DATA_FORMATS = ("NHWC", "NCHW")

PREPROCESSING = (
    "resize the shortest edge to 256 (bicubic, as cv2.INTER_CUBIC), centre-crop 224x224, "
    "RGB -> BGR, keep 0-255 (uint8, or float32 when input_dtype='float32'). Mean/std "
    "normalisation happens inside the graph (name scope image_preprocess).")


def imagenet_preprocess(rgb: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """HxWx3 uint8 RGB -> 224x224x3 BGR in ``dtype`` (see the module docstring)."""
    img = P.resize_shortest_edge(rgb, 256, "bicubic")          # (>=256, >=256, 3) uint8
    img = P.center_crop(img, (IMAGE_SIZE, IMAGE_SIZE))         # (224, 224, 3)
    img = np.ascontiguousarray(img[:, :, ::-1])                # RGB -> BGR
    return img.astype(dtype)


class ImageNetModel(ClassifierModel):
    """tensorpack's ``ImageNetModel``: subclasses implement ``get_logits(image)`` on the
    normalised image, already in ``self.data_format``."""

    input_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
    image_bgr = True
    weight_decay = 1e-4
    weight_decay_pattern = ".*/W"
    learning_rate = 0.1

    def __init__(self, data_format: str = "NHWC", input_dtype: str = "uint8"):
        self.data_format = data_format
        self.input_dtype = tf.as_dtype(input_dtype)

    def image_preprocess(self, image):
        with tf.name_scope("image_preprocess"):
            if image.dtype.base_dtype != tf.float32:
                image = tf.cast(image, tf.float32)
            mean = list(P.IMAGENET_MEAN_RGB)
            std = list(P.IMAGENET_STD_RGB)
            if self.image_bgr:
                mean, std = mean[::-1], std[::-1]
            image_mean = tf.constant(mean, dtype=tf.float32) * 255.0
            image_std = tf.constant(std, dtype=tf.float32) * 255.0
            return (image - image_mean) / image_std

    def build_graph(self, image, label):
        image = self.image_preprocess(image)                   # (N, 224, 224, 3) float32
        if self.data_format == "NCHW":
            image = tf.transpose(image, [0, 3, 1, 2])          # (N, 3, 224, 224)
        return super().build_graph(image, label)


def imagenet_zoo_model(config, model: ImageNetModel, logits_tensor: str = "linear/output:0") -> ZooModel:
    """The ZooModel of an ImageNet classifier with tensorpack's conventions."""
    dtype = config.input_dtype
    return ZooModel(
        architecture=config.architecture,
        config=config,
        model=model,
        inputs=(InputSpec("input", dtype, (IMAGE_SIZE, IMAGE_SIZE, 3), (0.0, 255.0), "BGR",
                          "224x224 BGR pixels 0-255 (normalised inside the graph)"),),
        outputs=(OutputSpec("prob", "prob:0", "softmax over the 1000 ImageNet classes"),
                 OutputSpec("logits", logits_tensor, "pre-softmax scores")),
        labels=L.indexed_labels(1000),
        preprocessing=PREPROCESSING,
        _preprocess=lambda rgb: imagenet_preprocess(rgb, dtype),
    )

"""Image augmentors with tensorpack 0.11's semantics (``tensorpack.dataflow.imgaug``), in NumPy.

``from layers.dataflow import imgaug`` replaces ``from tensorpack.dataflow import imgaug``. Each augmentor
draws its random parameters from ``self.rng`` in the same order and with the same calls as tensorpack's,
so a seeded generator gives the same augmentation. Resizing follows OpenCV's sampling rules without
OpenCV (see ``_resize``).
"""
from ._resize import INTER_CUBIC, INTER_LINEAR, INTER_NEAREST
from .base import Augmentor, AugmentorList, ImageAugmentor, PhotometricAugmentor
from .geometry import (
    BackgroundFiller,
    CenterCrop,
    CenterPaste,
    ConstantBackgroundFiller,
    Flip,
    RandomCrop,
    Resize,
    ResizeShortestEdge,
)
from .imgproc import Brightness, BrightnessScale, Clip, Contrast, MeanVarianceNormalize, MinMaxNormalize
from .meta import Identity, MapImage, RandomApplyAug
from .transform import (
    CropTransform,
    FlipTransform,
    LazyTransform,
    NoOpTransform,
    PhotometricTransform,
    ResizeTransform,
    Transform,
    TransformFactory,
    TransformList,
)

__all__ = [
    # bases
    "ImageAugmentor", "Augmentor", "AugmentorList", "PhotometricAugmentor",
    # geometry
    "RandomCrop", "CenterCrop", "Flip", "Resize", "ResizeShortestEdge", "CenterPaste",
    "BackgroundFiller", "ConstantBackgroundFiller", "INTER_NEAREST", "INTER_LINEAR", "INTER_CUBIC",
    # pixel values
    "Brightness", "BrightnessScale", "Contrast", "MeanVarianceNormalize", "MinMaxNormalize", "Clip",
    # functions and combinators
    "MapImage", "Identity", "RandomApplyAug",
    # transforms
    "Transform", "NoOpTransform", "CropTransform", "FlipTransform", "ResizeTransform",
    "PhotometricTransform", "TransformFactory", "LazyTransform", "TransformList",
]

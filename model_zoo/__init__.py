"""The model zoo: tensorpack's example architectures built with ``layers``, with serving metadata.

>>> import model_zoo
>>> model_zoo.names()
['cifar10-resnet', 'imagenet-resnet', 'mnist-convnet', 'shufflenet-v2', 'vgg16']
>>> zoo = model_zoo.get("imagenet-resnet", depth=50)     # a ZooModel
>>> zoo.input.shape, zoo.input.dtype, [o.tensor for o in zoo.outputs]
((224, 224, 3), 'uint8', ['prob:0', 'linear/output:0'])

``zoo.model`` is a ``layers.ModelDesc``; variable names equal those of tensorpack's model-zoo
files, so ``ImageNet-ResNet50.npz`` restores without renaming. See ``model_zoo/README.md``.
Importing this package registers the architectures below; it does not build any graph.
"""
from . import labels, preprocess, user
from .base import ClassifierModel
from .cifar10_resnet import Cifar10ResNet, Cifar10ResNetConfig
from .imagenet import ImageNetModel
from .imagenet_resnet import ImageNetResNet, ImageNetResNetConfig
from .mnist_convnet import MnistConvNet, MnistConvNetConfig
from .registry import ArchitectureConfig, check_choice, check_range, get, get_config_class, names, register
from .shufflenet import ShuffleNetV2, ShuffleNetV2Config
from .spec import InputSpec, OutputSpec, ZooModel
from .utils import build_inference_graph, count_parameters
from .vgg16 import VGG16, VGG16Config

__all__ = [
    # registry
    "register", "get", "names", "get_config_class", "ArchitectureConfig", "check_choice", "check_range",
    # metadata
    "ZooModel", "InputSpec", "OutputSpec", "labels", "preprocess",
    # the user's own models (ModelDesc by import path, SavedModel)
    "user",
    # helpers
    "build_inference_graph", "count_parameters",
    # architectures (ModelDesc + options)
    "ClassifierModel", "ImageNetModel",
    "MnistConvNet", "MnistConvNetConfig",
    "Cifar10ResNet", "Cifar10ResNetConfig",
    "ImageNetResNet", "ImageNetResNetConfig",
    "VGG16", "VGG16Config",
    "ShuffleNetV2", "ShuffleNetV2Config",
]

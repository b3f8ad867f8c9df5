"""The model zoo: tensorpack's example architectures built with ``layers``, with serving metadata.

>>> import model_zoo
>>> model_zoo.names()
['cifar10-resnet', 'imagenet-resnet', 'mnist-convnet', 'shufflenet-v2', 'vgg16']
>>> zoo = model_zoo.get("imagenet-resnet", depth=50)     # a ZooModel
>>> zoo.input.shape, zoo.input.dtype, [o.tensor for o in zoo.outputs]
((224, 224, 3), 'uint8', ['prob:0', 'linear/output:0'])

``zoo.model`` is a ``layers.ModelDesc``; variable names equal those of tensorpack's model-zoo
files, so ``ImageNet-ResNet50.npz`` restores without renaming. See ``model_zoo/README.md``.
Importing this package imports neither TensorFlow nor ``layers``: the architectures (and the names
below that need TensorFlow) load on first use, i.e. on the first ``names()``/``get()`` or attribute
access such as ``model_zoo.MnistConvNet``. So ``model_zoo.datasets`` and ``model_zoo.preprocess`` are
cheap to import (a JSON payload from the digits data needs no TensorFlow). No graph is built either way.
"""
import importlib

from . import labels, preprocess
from .registry import (
    ArchitectureConfig,
    add_loader,
    check_choice,
    check_range,
    get,
    get_config_class,
    names,
    register,
)
from .spec import InputSpec, OutputSpec, ZooModel

#: the built-in architectures, registered (imported) on the registry's first use
ARCHITECTURE_MODULES = ("cifar10_resnet", "imagenet_resnet", "mnist_convnet", "shufflenet", "vgg16")

#: public name -> the module (of this package) that defines it, imported on first access
_LAZY = {
    "ClassifierModel": "base", "ImageNetModel": "imagenet",
    "MnistConvNet": "mnist_convnet", "MnistConvNetConfig": "mnist_convnet",
    "Cifar10ResNet": "cifar10_resnet", "Cifar10ResNetConfig": "cifar10_resnet",
    "ImageNetResNet": "imagenet_resnet", "ImageNetResNetConfig": "imagenet_resnet",
    "VGG16": "vgg16", "VGG16Config": "vgg16",
    "ShuffleNetV2": "shufflenet", "ShuffleNetV2Config": "shufflenet",
    "build_inference_graph": "utils", "count_parameters": "utils",
}


def _register_architectures() -> None:
    for module in ARCHITECTURE_MODULES:
        importlib.import_module(f"{__name__}.{module}")


add_loader(_register_architectures)


def __getattr__(name: str):
    if name == "user":      # the user's own models: a module of its own (imports TensorFlow)
        return importlib.import_module(f"{__name__}.user")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"user"})


__all__ = [
    # registry
    "register", "get", "names", "get_config_class", "ArchitectureConfig", "check_choice", "check_range",
    "add_loader", "ARCHITECTURE_MODULES",
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

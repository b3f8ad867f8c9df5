"""Standard datasets read from local files (tensorpack's ``tensorpack.dataflow.dataset``); nothing downloads.

Files are looked for in ``dir=`` or ``$TENSORPACK_DATASET/<name>`` (default ``~/tensorpack_data/<name>``),
with tensorpack's names: ``mnist_data``, ``fashion_mnist_data``, ``cifar10_data``, ``cifar100_data``.
"""
from ._files import DatasetNotFoundError
from .cifar import Cifar10, Cifar100, CifarBase
from .mnist import FashionMnist, Mnist
from .safe_pickle import UnsafePickleError

__all__ = ["Mnist", "FashionMnist", "Cifar10", "Cifar100", "CifarBase", "DatasetNotFoundError",
           "UnsafePickleError"]

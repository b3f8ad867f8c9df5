"""tensorpack's dataflow API (``tensorpack.dataflow``): ``from layers.dataflow import BatchData, ...``.

Dataflows are plain Python/NumPy; importing this package starts no process and needs no TensorFlow
session. ``imgaug`` (augmentors) and ``dataset`` (MNIST, CIFAR from local files) are sub-packages, as in
tensorpack. Worker processes (``MultiProcessRunner``/``MultiProcessRunnerZMQ``) start in ``reset_state()``;
``parallel``'s docstring says how they differ from tensorpack's.
"""
from . import dataset, imgaug
from .base import (
    DataFlow,
    DataFlowReentrantGuard,
    DataFlowTerminated,
    ProxyDataFlow,
    RNGDataFlow,
    UnknownLengthError,
)
from .common import (
    BatchData,
    FixedSizeData,
    MapData,
    MapDataComponent,
    PrintData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
)
from .image import AugmentImageComponent, AugmentImageComponents
from .parallel import (
    DataFlowWorkerError,
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    PrefetchData,
    PrefetchDataZMQ,
)
from .raw import DataFromGenerator, DataFromIterable, DataFromList, FakeData
from .rng import fix_rng_seed, get_rng

__all__ = [
    # protocol
    "DataFlow", "RNGDataFlow", "ProxyDataFlow", "DataFlowTerminated", "DataFlowReentrantGuard",
    "UnknownLengthError",
    # sources
    "DataFromList", "DataFromGenerator", "DataFromIterable", "FakeData",
    # transformations
    "BatchData", "MapData", "MapDataComponent", "RepeatedData", "RepeatedDataPoint", "FixedSizeData",
    "PrintData", "SelectComponent", "AugmentImageComponent", "AugmentImageComponents",
    # worker processes
    "MultiProcessRunner", "MultiProcessRunnerZMQ", "DataFlowWorkerError", "PrefetchData",
    "MultiProcessPrefetchData", "PrefetchDataZMQ",
    # sub-packages and seeding
    "imgaug", "dataset", "get_rng", "fix_rng_seed",
]

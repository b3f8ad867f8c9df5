"""``from layers import *`` and the module paths give every tensorpack name that tensorpack's
examples/basics/mnist-convnet.py, examples/basics/cifar-convnet.py and
examples/ResNet/cifar10-resnet.py use (their import lines changed from tensorpack to layers)."""
import importlib

import tensorflow as tf

import layers

# Names those three scripts take from `from tensorpack import *` (dataflow ones included).
STAR_NAMES = [
    "ModelDesc", "argscope", "Conv2D", "LinearWrap", "MaxPooling", "FullyConnected", "Dropout", "BNReLU",
    "BatchNorm", "AvgPooling", "GlobalAvgPooling", "regularize_cost", "l2_regularizer", "get_global_step_var",
    "BatchData", "PrintData", "AugmentImageComponent", "MultiProcessRunner", "MultiProcessRunnerZMQ", "imgaug",
    "logger", "TrainConfig", "FeedInput", "QueueInput", "ModelSaver", "InferenceRunner", "ScalarStats",
    "ClassificationError", "MaxSaver", "StatMonitorParamSetter", "ScheduledHyperParamSetter", "StopTraining",
    "SmartInit", "launch_train_with_config", "SimpleTrainer", "SyncMultiGPUTrainerParameterServer", "tfv1",
]
# `from tensorpack.X import Y` lines of the three scripts.
MODULE_NAMES = {
    "layers.dataflow": ["dataset"],
    "layers.tfutils": ["summary"],
    "layers.tfutils.summary": ["add_moving_summary", "add_param_summary", "add_tensor_summary"],
    "layers.utils.gpu": ["get_num_gpu"],
    "layers.callbacks": ["ModelSaver", "InferenceRunner"],
    "layers.train": ["TrainConfig", "launch_train_with_config"],
    "layers.input_source": ["QueueInput"],
}


def test_star_import_gives_the_names_tensorpack_examples_use():
    namespace = {}
    exec("from layers import *", namespace)
    assert [n for n in STAR_NAMES if n not in namespace] == []
    assert namespace["tfv1"] is tf.compat.v1
    assert callable(namespace["logger"].auto_set_dir) and callable(namespace["logger"].set_logger_dir)


def test_tensorpack_module_paths_exist_under_layers():
    missing = [f"{m}.{n}" for m, names in MODULE_NAMES.items() for n in names
               if not hasattr(importlib.import_module(m), n)]
    assert missing == []


def test_every_exported_name_exists():
    assert [n for n in layers.__all__ if not hasattr(layers, n)] == []

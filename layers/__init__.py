"""tensorpack 0.11-compatible symbolic layers on TensorFlow 2.21 graph mode (``tf.compat.v1``).

``from layers import Conv2D, BatchNorm, argscope, LinearWrap, TowerContext, ...`` and tensorpack
model code runs unchanged, with the same variable and output names. Importing this package does
not change any global TensorFlow state (eager execution stays on; build inside
``with tf.Graph().as_default():``).
"""
from ._compat import gpu_count, kernel_policy, use_native_kernels
from .argscope import argscope, enable_argscope_for_function, enable_argscope_for_module, get_arg_scope
from .batch_norm import BatchNorm
from .callbacks import (
    Callback,
    CallbackFactory,
    Callbacks,
    CheckNumerics,
    ClassificationError,
    EnableCallbackIf,
    EstimatedTimeLeft,
    GraphVarParam,
    HookToCallback,
    HumanHyperParamSetter,
    HyperParam,
    HyperParamSetter,
    HyperParamSetterWithFunc,
    Inferencer,
    InferenceRunner,
    JSONWriter,
    MaxSaver,
    MergeAllSummaries,
    MinSaver,
    ModelSaver,
    MonitorBase,
    Monitors,
    MovingAverageSummary,
    ObjAttrParam,
    PeriodicCallback,
    PeriodicTrigger,
    ProcessTensors,
    ProgressBar,
    ProxyCallback,
    RunOp,
    RunUpdateOps,
    ScalarPrinter,
    ScalarStats,
    ScheduledHyperParamSetter,
    SessionRunTimeout,
    SimpleMovingAverage,
    StartProcOrThread,
    StatMonitorParamSetter,
    TensorPrinter,
    TFEventWriter,
)
from .conv import Conv2D, Conv2DTranspose, Deconv2D
from .dataflow import (
    AugmentImageComponent,
    AugmentImageComponents,
    BatchData,
    DataFlow,
    DataFlowTerminated,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    FakeData,
    FixedSizeData,
    MapData,
    MapDataComponent,
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    PrefetchData,
    PrefetchDataZMQ,
    PrintData,
    ProxyDataFlow,
    RepeatedData,
    RepeatedDataPoint,
    RNGDataFlow,
    SelectComponent,
    dataset,
    imgaug,
)
from .export import export_saved_model
from .fc import FullyConnected, batch_flatten
from .input_source import (
    DummyConstantInput,
    FeedfreeInput,
    FeedInput,
    InputSource,
    PlaceholderInput,
    QueueInput,
    TensorInput,
)
from .linear_wrap import LinearWrap
from .misc import ConcatWith, Dropout
from .model_desc import ModelDesc, ModelDescBase
from .nonlin import BNReLU, Maxout, PReLU
from .normalization import InstanceNorm, LayerNorm
from .pool import AvgPooling, FixedUnPooling, GlobalAvgPooling, MaxPooling
from .predict import MultiDevicePredictor, OfflinePredictor, PredictConfig, PredictorReplica
from .registry import VariableHolder, disable_layer_logging, get_registered_layer, layer_register
from .regularize import l1_regularizer, l2_regularizer, regularize_cost, regularize_cost_from_collection
from .saved_model import SavedModelPredictor
from .sessinit import (
    ChainInit,
    DictRestore,
    JustCurrentSession,
    RestoreReport,
    SaverRestore,
    SessionInit,
    SmartInit,
    dump_model_params,
    get_checkpoint_path,
    get_model_loader,
    load_checkpoint_vars,
    save_checkpoint_vars,
)
from .tfutils import (
    get_default_sess_config,
    get_global_step_value,
    get_global_step_var,
    get_op_tensor_name,
    get_tf_version_tuple,
    summary,
    tfv1,
    varreplace,
)
from .tower import (
    BaseTowerContext,
    PredictTowerContext,
    TowerContext,
    TrainTowerContext,
    get_current_tower_context,
)
from .train import (
    AutoResumeTrainConfig,
    NoOpTrainer,
    SimpleTrainer,
    StopTraining,
    SyncMultiGPUTrainer,
    SyncMultiGPUTrainerParameterServer,
    SyncMultiGPUTrainerReplicated,
    TrainConfig,
    Trainer,
    launch_train_with_config,
)
from .utils import logger

__all__ = [
    # plumbing
    "layer_register", "VariableHolder", "disable_layer_logging", "get_registered_layer",
    "argscope", "get_arg_scope", "enable_argscope_for_function", "enable_argscope_for_module",
    "LinearWrap", "kernel_policy", "use_native_kernels", "gpu_count", "ModelDesc", "ModelDescBase",
    # towers
    "TowerContext", "TrainTowerContext", "PredictTowerContext", "BaseTowerContext",
    "get_current_tower_context",
    # layers
    "Conv2D", "Conv2DTranspose", "Deconv2D", "FullyConnected", "BatchNorm", "BNReLU", "LayerNorm",
    "InstanceNorm", "MaxPooling", "AvgPooling", "GlobalAvgPooling", "FixedUnPooling", "Dropout",
    "PReLU", "Maxout", "ConcatWith", "batch_flatten",
    # regularisation
    "regularize_cost", "regularize_cost_from_collection", "l2_regularizer", "l1_regularizer",
    # checkpoints and predictors
    "SmartInit", "get_model_loader", "SessionInit", "JustCurrentSession", "DictRestore", "SaverRestore",
    "ChainInit", "RestoreReport", "dump_model_params", "save_checkpoint_vars", "load_checkpoint_vars",
    "get_checkpoint_path", "PredictConfig", "OfflinePredictor", "MultiDevicePredictor", "PredictorReplica",
    "export_saved_model", "SavedModelPredictor",
    # dataflow (tensorpack.dataflow; `from tensorpack import *` gives these too)
    "DataFlow", "RNGDataFlow", "ProxyDataFlow", "DataFlowTerminated", "DataFromList", "DataFromGenerator",
    "DataFromIterable", "FakeData", "BatchData", "MapData", "MapDataComponent", "RepeatedData",
    "RepeatedDataPoint", "FixedSizeData", "PrintData", "SelectComponent", "AugmentImageComponent",
    "AugmentImageComponents", "MultiProcessRunner", "MultiProcessRunnerZMQ", "PrefetchData",
    "MultiProcessPrefetchData", "PrefetchDataZMQ", "imgaug", "dataset",
    # training (tensorpack.train, .callbacks, .input_source, .tfutils, .utils)
    "tfv1", "logger", "summary", "varreplace", "get_global_step_var", "get_global_step_value",
    "get_default_sess_config", "get_op_tensor_name", "get_tf_version_tuple",
    "TrainConfig", "AutoResumeTrainConfig", "launch_train_with_config", "Trainer", "SimpleTrainer",
    "NoOpTrainer", "SyncMultiGPUTrainer", "SyncMultiGPUTrainerParameterServer", "SyncMultiGPUTrainerReplicated",
    "StopTraining", "InputSource", "PlaceholderInput", "FeedInput", "FeedfreeInput", "QueueInput", "TensorInput",
    "DummyConstantInput", "Callback", "ProxyCallback", "CallbackFactory", "Callbacks", "ModelSaver", "MinSaver",
    "MaxSaver", "InferenceRunner", "Inferencer", "ScalarStats", "ClassificationError", "HyperParam",
    "GraphVarParam", "ObjAttrParam", "HyperParamSetter", "HumanHyperParamSetter", "ScheduledHyperParamSetter",
    "HyperParamSetterWithFunc", "StatMonitorParamSetter", "EstimatedTimeLeft", "PeriodicTrigger",
    "PeriodicCallback", "EnableCallbackIf", "ProgressBar", "TensorPrinter", "MergeAllSummaries",
    "MovingAverageSummary", "RunOp", "RunUpdateOps", "ProcessTensors", "CheckNumerics", "StartProcOrThread",
    "MonitorBase", "Monitors", "TFEventWriter", "JSONWriter", "ScalarPrinter", "HookToCallback",
    "SessionRunTimeout", "SimpleMovingAverage",
]

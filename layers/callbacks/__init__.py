"""tensorpack's callbacks and monitors: ``from layers.callbacks import ModelSaver, InferenceRunner, ...``.

See :mod:`layers.callbacks.base` for the callback life cycle.
"""
from .base import (
    Callback,
    CallbackFactory,
    Callbacks,
    CallbackToHook,
    HookedSession,
    HookToCallback,
    ProxyCallback,
)
from .concurrency import StartProcOrThread
from .graph import CheckNumerics, ProcessTensors, RunOp, RunUpdateOps
from .inference import BinaryClassificationStats, ClassificationError, Inferencer, ScalarStats
from .inference_runner import InferenceRunner, InferenceRunnerBase
from .misc import EstimatedTimeLeft
from .monitor import (
    JSONWriter,
    MonitorBase,
    Monitors,
    NoOpMonitor,
    ScalarHistory,
    ScalarPrinter,
    TFEventWriter,
)
from .param import (
    GraphVarParam,
    HumanHyperParamSetter,
    HyperParam,
    HyperParamSetter,
    HyperParamSetterWithFunc,
    ObjAttrParam,
    ScheduledHyperParamSetter,
    StatMonitorParamSetter,
)
from .saver import MaxSaver, MinSaver, ModelSaver
from .steps import MaintainStepCounter, ProgressBar, SessionRunTimeout, TensorPrinter
from .summary import MergeAllSummaries, MovingAverageSummary, SimpleMovingAverage
from .trigger import EnableCallbackIf, PeriodicCallback, PeriodicTrigger

__all__ = [
    "Callback", "ProxyCallback", "CallbackFactory", "Callbacks", "CallbackToHook", "HookToCallback", "HookedSession",
    "SessionRunTimeout", "SimpleMovingAverage",
    "StartProcOrThread", "RunOp", "RunUpdateOps", "ProcessTensors", "CheckNumerics",
    "Inferencer", "ScalarStats", "ClassificationError", "BinaryClassificationStats",
    "InferenceRunner", "InferenceRunnerBase", "EstimatedTimeLeft",
    "MonitorBase", "NoOpMonitor", "Monitors", "TFEventWriter", "JSONWriter", "ScalarPrinter", "ScalarHistory",
    "HyperParam", "GraphVarParam", "ObjAttrParam", "HyperParamSetter", "HumanHyperParamSetter",
    "ScheduledHyperParamSetter", "HyperParamSetterWithFunc", "StatMonitorParamSetter",
    "ModelSaver", "MinSaver", "MaxSaver", "ProgressBar", "TensorPrinter", "MaintainStepCounter",
    "MovingAverageSummary", "MergeAllSummaries", "PeriodicTrigger", "PeriodicCallback", "EnableCallbackIf",
]

"""``tensorpack.tfutils``: ``from layers.tfutils import get_global_step_var``,
``from layers.tfutils import summary``, ``from layers.tfutils.varreplace import freeze_variables`` ...
(submodules ``common``, ``summary``, ``varreplace``, ``tower``, ``sessinit``, ``argscope``)."""
from .._compat import tfv1
from . import common, sesscreate, sessinit, summary, tower, varreplace
from .argscope import argscope, enable_argscope_for_function, enable_argscope_for_module, get_arg_scope
from .common import (
    get_default_sess_config,
    get_global_step_value,
    get_global_step_var,
    get_op_or_tensor_by_name,
    get_op_tensor_name,
    get_tensors_by_names,
    get_tf_version_tuple,
)
from .sessinit import (
    ChainInit,
    DictRestore,
    JustCurrentSession,
    SaverRestore,
    SaverRestoreRelaxed,
    SessionInit,
    SmartInit,
    get_model_loader,
)
from .tower import TowerContext, TowerFunc, get_current_tower_context

__all__ = ["tfv1", "get_global_step_var", "get_global_step_value", "get_default_sess_config",
           "get_op_tensor_name", "get_op_or_tensor_by_name", "get_tensors_by_names", "get_tf_version_tuple",
           "argscope", "get_arg_scope", "enable_argscope_for_function", "enable_argscope_for_module",
           "SessionInit", "JustCurrentSession", "DictRestore", "SaverRestore", "SaverRestoreRelaxed", "ChainInit",
           "SmartInit", "get_model_loader", "TowerContext", "TowerFunc", "get_current_tower_context",
           "common", "summary", "varreplace", "tower", "sessinit", "sesscreate"]

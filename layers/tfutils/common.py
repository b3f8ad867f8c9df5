"""Graph helpers from ``tensorpack.tfutils.common``: the global step, session config, name lookup."""
from __future__ import annotations

from .._compat import tf, tfv1

__all__ = ["get_global_step_var", "get_global_step_value", "get_default_sess_config", "get_op_tensor_name",
           "get_op_or_tensor_by_name", "get_tensors_by_names", "get_tf_version_tuple"]


def get_global_step_var():
    """The ``global_step`` variable (int64, at the root variable scope) of the default graph; created
    on first use. The trainer increments it once per training step."""
    g = tfv1.get_default_graph()
    existing = g.get_collection(tfv1.GraphKeys.GLOBAL_STEP)
    if existing:
        return existing[0]
    # Root variable scope and no name scope, so the name is 'global_step' wherever it is first asked for.
    with g.name_scope(None), tfv1.variable_scope(tfv1.VariableScope(reuse=False, name="")):
        return tfv1.train.get_or_create_global_step()


def get_global_step_value() -> int:
    """The global step's value in the default session."""
    return int(tfv1.train.global_step(tfv1.get_default_session(), get_global_step_var()))


def get_default_sess_config(mem_fraction=0.99):
    """tensorpack's session config: soft placement, GPU ``allow_growth``; TF's default thread pools
    (tensorpack sets ``intra_op_parallelism_threads=1``, which is slow on CPU)."""
    conf = tfv1.ConfigProto()
    conf.allow_soft_placement = True
    conf.gpu_options.per_process_gpu_memory_fraction = mem_fraction
    conf.gpu_options.allow_growth = True
    return conf


def get_op_tensor_name(name: str):
    """``'x'`` -> ``('x', 'x:0')``; ``'x:1'`` -> ``('x', 'x:1')``."""
    if len(name) >= 3 and name[-2] == ":":
        return name[:-2], name
    return name, name + ":0"


def get_op_or_tensor_by_name(name):
    """A tensor for ``'x:0'``, an operation for ``'x'`` (or a list for a list); KeyError if missing."""
    g = tfv1.get_default_graph()

    def f(n):
        return g.get_tensor_by_name(n) if len(n) >= 3 and n[-2] == ":" else g.get_operation_by_name(n)
    return list(map(f, name)) if isinstance(name, list) else f(name)


def get_tensors_by_names(names):
    """Tensors of the default graph for op or tensor names."""
    g = tfv1.get_default_graph()
    return [g.get_tensor_by_name(get_op_tensor_name(n)[1]) for n in names]


def get_tf_version_tuple():
    """``(major, minor)`` of TensorFlow."""
    return tuple(map(int, tf.__version__.split(".")[:2]))

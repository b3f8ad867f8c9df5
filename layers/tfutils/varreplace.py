"""Variable getters from ``tensorpack.tfutils.varreplace``: freeze or transform variables in a block."""
from __future__ import annotations

import contextlib

from .._compat import tf, tfv1
from ..utils import logger

__all__ = ["custom_getter_scope", "remap_variables", "freeze_variables"]


@contextlib.contextmanager
def custom_getter_scope(custom_getter):
    """Re-enter the current variable scope with ``custom_getter`` (no new name scope)."""
    scope = tfv1.get_variable_scope()
    with tfv1.variable_scope(scope, custom_getter=custom_getter, auxiliary_name_scope=False):
        yield


def remap_variables(fn):
    """Every ``tf.compat.v1.get_variable`` in the block returns ``fn(variable)`` (e.g. quantised
    weights) instead of the variable."""
    def remap(getter, *args, **kwargs):       # TF passes the next getter as `getter=`
        return fn(getter(*args, **kwargs))
    return custom_getter_scope(remap)


def freeze_variables(stop_gradient=True, skip_collection=False):
    """Freeze variables created or fetched in the block.

    Args:
        stop_gradient: wrap each (trainable) variable in ``tf.stop_gradient`` (get_variable then
            returns a tensor named ``freezed_<name>``).
        skip_collection: create the variables as non-trainable and put them in MODEL_VARIABLES
            instead, so the trainer never updates them (needs to happen at creation).
    """
    def freeze(getter, *args, **kwargs):
        trainable = kwargs.get("trainable", True)
        name = args[0] if args else kwargs.get("name")
        if skip_collection:
            kwargs["trainable"] = False
        v = getter(*args, **kwargs)
        if trainable and skip_collection:
            if isinstance(v, tf.Variable):
                tfv1.add_to_collection(tfv1.GraphKeys.MODEL_VARIABLES, v)
            else:
                logger.warning("[freeze_variables] the getter returned %r, not a variable (another custom "
                               "getter?); it may still be trainable", v)
        if trainable and stop_gradient:
            v = tf.stop_gradient(v, name="freezed_" + name)
        return v
    return custom_getter_scope(freeze)

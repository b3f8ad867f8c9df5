"""``argscope``: default keyword arguments for layers inside a ``with`` block.

Differences from tensorpack (documented improvements):

* the scope stack is per thread, so two threads building graphs do not see each other's defaults;
* the previous scope is restored in ``finally``, even when the block raises;
* arguments a layer does not accept are rejected when the scope is entered, naming the layer.
"""
from __future__ import annotations

import copy
import functools
import inspect
import logging
import threading
from collections import defaultdict
from contextlib import contextmanager

__all__ = ["argscope", "get_arg_scope", "enable_argscope_for_function", "enable_argscope_for_module"]

logger = logging.getLogger("layers")
_local = threading.local()


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_arg_scope():
    """The current argscope: a dict ``{layer_name: {arg: value}}`` (a ``defaultdict(dict)``).

    Example models read it directly, e.g. ``get_arg_scope()['Conv2D']['data_format']``.
    """
    stack = _stack()
    return stack[-1] if stack else defaultdict(dict)


@contextmanager
def argscope(layers, **kwargs):
    """Set default keyword arguments for one layer or a list of layers.

    Nested scopes accumulate; the inner one wins; an explicit argument in a call beats both.
    Old argument names (``nl``, ``out_channel``, ``kernel_shape``, ``data_format='NCHW'``) work.

    Raises:
        TypeError: an element of ``layers`` is not a registered layer (or a function passed through
            ``enable_argscope_for_function``), or it does not accept one of the arguments.
    """
    if not isinstance(layers, (list, tuple)):
        layers = [layers]
    for layer in layers:
        if not getattr(layer, "__argscope_enabled__", False):
            raise TypeError(f"argscope: {getattr(layer, '__name__', layer)!r} is not a layer; only functions "
                            "decorated with layer_register or wrapped by enable_argscope_for_function can be used")
        accepted = getattr(layer, "accepted_arguments", None)
        if accepted is not None:
            bad = sorted(k for k in kwargs if k not in accepted)
            if bad:
                raise TypeError(f"argscope: layer {layer.__name__} does not accept argument(s) {bad}; "
                                f"it accepts {sorted(accepted)}")
    new_scope = copy.copy(get_arg_scope())
    new_scope = defaultdict(dict, {k: dict(v) for k, v in new_scope.items()})
    for layer in layers:
        new_scope[layer.__name__].update(kwargs)
    stack = _stack()
    stack.append(new_scope)
    try:
        yield
    finally:
        stack.pop()


def _shape_of(t):
    shape = getattr(t, "shape", None)
    try:
        return shape.as_list() if shape is not None else None
    except ValueError:
        return None


def enable_argscope_for_function(func, log_shape=True):
    """Make a plain function usable with ``argscope`` (keyed by ``func.__name__``).

    With ``log_shape`` the first call logs ``name: in --> out``. Unlike tensorpack this does not need
    a TowerContext. No variable scope is opened.
    """
    if not callable(func):
        raise TypeError(f"enable_argscope_for_function: expected a function, got {type(func).__name__}")
    logged = set()

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        actual = dict(get_arg_scope().get(func.__name__, {}))
        actual.update(kwargs)
        out = func(*args, **actual)
        if log_shape and args:
            name = actual.get("name", func.__name__)
            if name not in logged:
                logged.add(name)
                logger.info("%s: %s --> %s", name, _shape_of(args[0]), _shape_of(out))
        return out

    wrapped.__argscope_enabled__ = True
    return wrapped


def enable_argscope_for_module(module, log_shape=True):
    """Patch every public function of ``module`` with :func:`enable_argscope_for_function`.

    This mutates ``module`` in place (as tensorpack does); it is never done on import.
    """
    for name, obj in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("_"):
            setattr(module, name, enable_argscope_for_function(obj, log_shape=log_shape))

"""``layer_register``: turns a function into a tensorpack-style layer ``Layer('name', x, ...)``.

A registered layer:

* takes the layer name first (``use_scope=True``), optionally (``use_scope=None``) or never
  (``use_scope=False``), and opens ``tf.compat.v1.variable_scope(name)`` around the body, so its
  variables are ``name/W``, ``name/b`` ...;
* merges ``argscope`` defaults under explicit keyword arguments;
* maps positional arguments after the input onto the names in ``positional`` (so an explicit
  positional ``filters`` beats an argscope default) and renames tensorpack's old argument names
  (``nl``, ``out_channel``, ``kernel_shape``, ``stride``, ``W_init``, ``b_init``, ...);
* logs ``'conv0': [?, 28, 28, 1] --> [?, 28, 28, 32]`` once per scope when ``log_shape=True``.

Difference from tensorpack: an old and a new name for the same argument given in *different*
places (argscope sets ``kernel_shape``, the call passes ``kernel_size``) is not a conflict: the
explicit call wins, as it would for any other argument. Only the same source giving both names
is an error.
"""
from __future__ import annotations

import functools
import inspect
import logging
import re
import threading

from ._compat import require_graph, tf

__all__ = ["layer_register", "VariableHolder", "disable_layer_logging", "get_registered_layer",
           "registered_layer_names"]

logger = logging.getLogger("layers")

_REGISTRY: dict = {}
_log_lock = threading.Lock()
_logged_scopes: set = set()
_logging_enabled = [True]

#: Renames applied to every layer (tensorpack's ``convert_to_tflayer_args`` common part).
COMMON_RENAMES = {"W_init": "kernel_initializer", "b_init": "bias_initializer"}


class VariableHolder:
    """Attribute bag holding a layer's variables, attached to its output as ``out.variables``.

    >>> # l = Conv2D('conv1', x, 32, 3); l.variables.W, l.variables.b
    """

    def __init__(self, **kwargs):
        self._vars = {}
        for k, v in kwargs.items():
            self._add_variable(k, v)

    def _add_variable(self, name, var):
        if name in self._vars:
            raise ValueError(f"VariableHolder: variable {name!r} is already registered")
        self._vars[name] = var

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            self._add_variable(name, value)
        super().__setattr__(name, value)

    def __getattr__(self, name):
        try:
            return self.__dict__["_vars"][name]
        except KeyError:
            raise AttributeError(f"VariableHolder has no variable {name!r}; it has {sorted(self._vars)}") from None

    def all(self):
        """All registered values, in insertion order."""
        return list(self._vars.values())


def disable_layer_logging():
    """Turn off the one-line shape log every ``log_shape`` layer prints when first built."""
    _logging_enabled[0] = False


def get_registered_layer(name: str):
    """The registered layer called ``name``, or ``None``."""
    return _REGISTRY.get(name)


def registered_layer_names():
    return sorted(_REGISTRY)


def _register(name, func):
    if name == "tf":
        raise ValueError("A layer cannot be registered under the name 'tf' (LinearWrap uses .tf)")
    if name in _REGISTRY:
        raise ValueError(f"layer_register: a layer named {name!r} is already registered")
    _REGISTRY[name] = func


def _is_tensor(x) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable)) or (
        hasattr(x, "dtype") and hasattr(x, "op") and hasattr(x, "graph"))


def _shape_str(t) -> str:
    try:
        dims = t.shape.as_list()
    except (ValueError, AttributeError):
        return "<unknown rank>"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _log_shape(scope_name, inputs, outputs, indent):
    if not _logging_enabled[0]:
        return
    key = re.sub(r"tower[0-9]+/", "", scope_name)
    with _log_lock:
        if key in _logged_scopes:
            return
        _logged_scopes.add(key)
    first_out = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    logger.info("%s%r: %s --> %s", "  " * indent, key, _shape_str(inputs), _shape_str(first_out))


_depth = threading.local()


def _normalize_kwargs(layer, src, kwargs, renames):
    out, given_as = {}, {}
    for k, v in kwargs.items():
        new = renames.get(k, COMMON_RENAMES.get(k, k))
        if k == "nl":
            new = "activation"
            f = v
            v = (lambda x, _f=f: _f(x)) if f is not None else None
        if new in out:
            old_name = k if k != new else given_as[new]
            raise TypeError(f"{layer}: arguments {old_name!r} and {new!r} both given {src}; they mean the same "
                            f"thing ({old_name!r} is the old name), pass only {new!r}")
        out[new] = v
        given_as[new] = k
    return out


def layer_register(log_shape=False, use_scope=True, positional=(), renames=None, aliases=()):
    """Register a layer function.

    Args:
        log_shape: log input/output shapes the first time each scope is built.
        use_scope: True -> the name is required as first argument; None -> optional;
            False -> no variable scope (a name given anyway is used, with a warning).
        positional: names of the arguments that may be passed positionally after the input.
        renames: old argument name -> new name (tensorpack's ``name_mapping``).
        aliases: extra registry names (``Deconv2D`` for ``Conv2DTranspose``).
    """
    renames = dict(renames or {})

    def wrapper(func):
        layer = func.__name__
        sig = inspect.signature(func)
        params = list(sig.parameters)
        wants_scoped_flag = "_scoped" in params

        @functools.wraps(func)
        def wrapped(*args, **kwargs):
            require_graph(layer)
            name = None
            if use_scope:
                if not args or not isinstance(args[0], str):
                    got = type(args[0]).__name__ if args else "nothing"
                    raise TypeError(f"{layer}: the first argument must be the layer name (a str), got {got}. "
                                    f"Did you forget the name? e.g. {layer}('{layer.lower()}0', x, ...)")
                name, args = args[0], args[1:]
            elif args and isinstance(args[0], str):
                if use_scope is False:
                    logger.warning("%s does not take a name; using %r as a scope anyway", layer, args[0])
                name, args = args[0], args[1:]
            if not args:
                raise TypeError(f"{layer}: missing the input tensor")
            inputs, args = args[0], args[1:]
            first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
            if not _is_tensor(first):
                raise TypeError(f"{layer}: the input must be a tf.Tensor or tf.Variable (or a list starting "
                                f"with one), got {type(inputs).__name__}")
            if len(args) > len(positional):
                raise TypeError(f"{layer}: takes at most {len(positional)} positional argument(s) after the input "
                                f"({', '.join(positional) or 'none'}), got {len(args)}; pass the rest by keyword")
            # argscope defaults, then explicit keywords, then explicit positionals win.
            from .argscope import get_arg_scope  # local: argscope imports this module

            merged = _normalize_kwargs(layer, "in argscope", get_arg_scope().get(layer, {}), renames)
            explicit = _normalize_kwargs(layer, "in the call", kwargs, renames)
            for pname, value in zip(positional, args, strict=False):
                if pname in explicit:
                    raise TypeError(f"{layer}: argument {pname!r} given both positionally and by keyword")
                explicit[pname] = value
            merged.update(explicit)
            unknown = [k for k in merged if k not in params or k == "_scoped"]
            if unknown:
                allowed = [p for p in params[1:] if p != "_scoped"]
                raise TypeError(f"{layer}: unknown argument(s) {unknown}; expected some of {allowed}")
            if wants_scoped_flag:
                merged["_scoped"] = name is not None

            depth = getattr(_depth, "value", 0)
            _depth.value = depth + 1
            try:
                if name is not None:
                    with tf.compat.v1.variable_scope(name) as scope:
                        outputs = func(inputs, **merged)
                    if log_shape:
                        _log_shape(scope.name, inputs, outputs, depth)
                else:
                    outputs = func(inputs, **merged)
            finally:
                _depth.value = depth
            return outputs

        wrapped.use_scope = use_scope
        wrapped.__argscope_enabled__ = True
        accepted = frozenset(p for p in params[1:] if p != "_scoped")
        # old names are accepted only where the argument they stand for exists (no W_init on MaxPooling)
        wrapped.accepted_arguments = accepted | {old for old, new in {**COMMON_RENAMES, **renames}.items()
                                                 if new in accepted} | ({"nl"} if "activation" in accepted else set())
        _register(layer, wrapped)
        for alias in aliases:
            _register(alias, wrapped)
        return wrapped

    return wrapper

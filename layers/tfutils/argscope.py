"""``tensorpack.tfutils.argscope``: the same functions as :mod:`layers.argscope`."""
from ..argscope import argscope, enable_argscope_for_function, enable_argscope_for_module, get_arg_scope

__all__ = ["argscope", "get_arg_scope", "enable_argscope_for_function", "enable_argscope_for_module"]

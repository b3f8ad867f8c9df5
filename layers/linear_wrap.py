"""``LinearWrap``: chain single-input layers and TensorFlow functions."""
from __future__ import annotations

from types import ModuleType

from ._compat import tf
from .registry import get_registered_layer

__all__ = ["LinearWrap"]


class LinearWrap:
    """Wrap a tensor to build a linear chain::

        l = (LinearWrap(image)
             .Conv2D('conv0', 32, 3)
             .MaxPooling('pool0', 2)
             .tf.multiply(0.5)             # any tensorflow function: fn(tensor, *args, **kw)
             .apply(func, *args)           # func(tensor, *args)
             .apply2(func2, 'name', *a)    # func2('name', tensor, *a)
             .FullyConnected('fc1', 10)())  # () or .tensor() returns the tf.Tensor

    Each step returns a new ``LinearWrap``; layers are looked up in the registry when called, so
    layers registered after this module was imported work too.
    """

    class _TFModuleFunc:
        def __init__(self, mod, tensor):
            self._mod = mod
            self._t = tensor

        def __getattr__(self, name):
            ret = getattr(self._mod, name)
            if isinstance(ret, ModuleType):
                return LinearWrap._TFModuleFunc(ret, self._t)

            def f(*args, **kwargs):
                return LinearWrap(ret(self._t, *args, **kwargs))

            return f

    def __init__(self, tensor):
        self._t = tensor

    def __getattr__(self, layer_name):
        if layer_name.startswith("__"):
            raise AttributeError(layer_name)
        if layer_name == "tf":
            return LinearWrap._TFModuleFunc(tf, self._t)
        layer = get_registered_layer(layer_name)
        if layer is None:
            raise AttributeError(f"LinearWrap: {layer_name!r} is neither a registered layer nor 'tf'")
        if layer.use_scope:
            def layer_func(name, *args, **kwargs):
                return LinearWrap(layer(name, self._t, *args, **kwargs))
        else:
            def layer_func(*args, **kwargs):
                if args and isinstance(args[0], str):
                    return LinearWrap(layer(args[0], self._t, *args[1:], **kwargs))
                return LinearWrap(layer(self._t, *args, **kwargs))
        return layer_func

    def apply(self, func, *args, **kwargs):
        """``func(tensor, *args, **kwargs)``."""
        return LinearWrap(func(self._t, *args, **kwargs))

    def apply2(self, func, *args, **kwargs):
        """``func(args[0], tensor, *args[1:], **kwargs)`` (for name-first functions)."""
        return LinearWrap(func(args[0], self._t, *args[1:], **kwargs))

    def __call__(self):
        return self._t

    def tensor(self):
        return self._t

    def print_tensor(self):
        print(self._t)
        return self

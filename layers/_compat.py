"""The one place that knows about TensorFlow versions, devices and kernel availability.

Layer bodies never branch on TensorFlow versions or devices themselves; they ask this module.

Kernel policy
-------------
TensorFlow 2.21's default CPU kernels refuse NCHW ``Conv2D``/``MaxPool``/``AvgPool``/
``Conv2DTranspose`` and grouped convolution, and have no gradient for a dilated ``Conv2D``.
Rather than flipping the process-wide ``TF_ENABLE_ONEDNN_OPTS`` switch (which must be set before
TensorFlow is imported and changes every kernel in the process), ``layers`` builds CPU-safe
graphs: NCHW ops run as transpose -> NHWC op -> transpose, grouped convolutions as one
convolution per group followed by a concat, and dilated convolutions through
``tf.nn.convolution`` (SpaceToBatch -> conv -> BatchToSpace), whose gradient exists on CPU.
On GPUs the native cuDNN kernels are used. The choice is made when the graph is *built*:

* ``'auto'`` (default): native kernels when TensorFlow sees a GPU, CPU-safe graphs otherwise;
* ``'native'`` / ``'portable'``: force one or the other, e.g. ``with kernel_policy('portable'):``
  around a replica that will be pinned to ``/cpu:0`` on a GPU machine.

Both paths compute the same function; tests compare them against NumPy.
"""
from __future__ import annotations

import contextlib
import functools
import threading

import tensorflow as tf

tfv1 = tf.compat.v1

__all__ = ["tf", "tfv1", "kernel_policy", "use_native_kernels", "require_graph", "gpu_count"]

_POLICIES = ("auto", "native", "portable")
_local = threading.local()


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """Number of GPUs TensorFlow can see (cached; does not create a session)."""
    return len(tf.config.list_physical_devices("GPU"))


def _current_policy() -> str:
    return getattr(_local, "policy", "auto")


@contextlib.contextmanager
def kernel_policy(policy: str):
    """Choose native or CPU-portable kernels for layers built inside the block (see module doc)."""
    if policy not in _POLICIES:
        raise ValueError(f"kernel_policy: expected one of {_POLICIES}, got {policy!r}")
    old = _current_policy()
    _local.policy = policy
    try:
        yield
    finally:
        _local.policy = old


def use_native_kernels() -> bool:
    """True when layers should emit NCHW/grouped/dilated ops natively (GPU), False for CPU-safe graphs."""
    policy = _current_policy()
    if policy == "auto":
        return gpu_count() > 0
    return policy == "native"


def require_graph(layer_name: str) -> None:
    """Raise a clear error when a symbolic layer is called eagerly."""
    if tf.executing_eagerly():
        raise RuntimeError(
            f"{layer_name} is a symbolic (graph-mode) layer and was called eagerly. Build the model "
            "inside `with tf.Graph().as_default():` (no need to disable eager execution globally)."
        )

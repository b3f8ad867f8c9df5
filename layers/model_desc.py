"""``ModelDesc``: a model's inputs and graph-building function, tensorpack style."""
from __future__ import annotations

from ._compat import tf, tfv1
from .tower import get_current_tower_context

__all__ = ["ModelDescBase", "ModelDesc"]


class ModelDescBase:
    """Subclass and implement :meth:`inputs` and :meth:`build_graph`."""

    def inputs(self):
        """A list of ``tf.TensorSpec(shape, dtype, name)``, one per input, each with a unique name."""
        raise NotImplementedError

    def build_graph(self, *inputs):
        """Build the model from input tensors (in :meth:`inputs` order).

        In a training tower return the total cost (a scalar); in inference the return value is
        ignored. Name the tensors you want to fetch (``tf.identity(x, name='prob')``).
        """
        raise NotImplementedError

    def get_input_signature(self):
        """The validated input signature (memoised)."""
        sig = getattr(self, "_input_signature", None)
        if sig is None:
            with tf.Graph().as_default():      # inputs() may create placeholders: keep them out of the caller's graph
                raw = list(self.inputs())
            sig = []
            for s in raw:
                if isinstance(s, tf.TensorSpec):
                    spec = s
                elif hasattr(s, "op") and s.op.type == "Placeholder":
                    spec = tf.TensorSpec(s.shape, s.dtype, s.op.name)
                else:
                    raise TypeError(f"{type(self).__name__}.inputs() must return tf.TensorSpec objects, got {s!r}")
                if not spec.name or any(c in spec.name for c in ": /"):
                    raise ValueError(f"{type(self).__name__}.inputs(): input names must be non-empty and contain "
                                     f"no ':', '/' or space, got {spec.name!r}")
                sig.append(spec)
            names = [s.name for s in sig]
            if len(set(names)) != len(names):
                raise ValueError(f"{type(self).__name__}.inputs(): duplicate input names {names}")
            self._input_signature = sig
        return sig

    @property
    def input_names(self):
        return [s.name for s in self.get_input_signature()]

    @property
    def training(self) -> bool:
        ctx = get_current_tower_context()
        if ctx is None:
            raise RuntimeError("ModelDesc.training is only defined inside a TowerContext")
        return ctx.is_training

    def create_placeholders(self):
        """One placeholder per input, named after it, in the current graph."""
        return [tfv1.placeholder(s.dtype, s.shape, name=s.name) for s in self.get_input_signature()]


class ModelDesc(ModelDescBase):
    """A :class:`ModelDescBase` that also defines its training optimizer."""

    def optimizer(self):
        """Return a ``tf.compat.v1.train.Optimizer``."""
        raise NotImplementedError

    def get_optimizer(self):
        """:meth:`optimizer`, memoised per graph: every tower of one training graph shares one
        optimizer, and training the same model again in a new graph builds a new one."""
        graph = tfv1.get_default_graph()
        cached = getattr(self, "_optimizer", None)
        if cached is None or cached[0] is not graph:
            self._optimizer = (graph, self.optimizer())
        return self._optimizer[1]

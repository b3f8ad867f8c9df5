"""``tensorpack.tfutils.tower``: the tower contexts of :mod:`layers.tower`, plus :class:`TowerFunc`,
which remembers every tower a function was built in so trainers and callbacks can find its tensors
(``trainer.towers.training()[0]['cost']``, the ``InferenceTower``'s outputs ...)."""
from __future__ import annotations

from ..tower import (
    BaseTowerContext,
    PredictTowerContext,
    TowerContext,
    TrainTowerContext,
    get_current_tower_context,
)
from .common import get_op_or_tensor_by_name, get_op_tensor_name

__all__ = ["TowerContext", "TrainTowerContext", "PredictTowerContext", "BaseTowerContext",
           "get_current_tower_context", "TowerFunc", "TowerFuncWrapper", "TowerTensorHandle",
           "TowerTensorHandles"]


class TowerFunc:
    """A function that builds one tower, called under a TowerContext; each call is recorded as a
    :class:`TowerTensorHandle`.

    Args:
        tower_fn: takes the input tensors (in ``input_signature`` order); returns anything.
        input_signature: list of ``tf.TensorSpec`` with unique names without ``:``, ``/`` or space.
    """

    def __new__(cls, tower_fn, input_signature):
        if isinstance(tower_fn, TowerFunc):      # don't wrap twice
            return tower_fn
        return super().__new__(cls)

    def __init__(self, tower_fn, input_signature):
        if isinstance(tower_fn, TowerFunc):
            return
        if not callable(tower_fn):
            raise TypeError(f"TowerFunc: tower_fn must be callable, got {tower_fn!r}")
        names = [s.name for s in input_signature]
        if any(not n for n in names):
            raise ValueError(f"TowerFunc: input signature names must be non-empty, got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"TowerFunc: duplicate names in the input signature: {names}")
        bad = [n for n in names if any(c in n for c in ": /")]
        if bad:
            raise ValueError(f"TowerFunc: input names must not contain ':', '/' or space, got {bad}")
        self._tower_fn = tower_fn
        self._input_signature = list(input_signature)
        self._handles = []

    def __call__(self, *args):
        ctx = get_current_tower_context()
        if ctx is None:
            raise RuntimeError("TowerFunc must be called under a TowerContext")
        output = self._tower_fn(*args)
        self._handles.append(TowerTensorHandle(ctx, args, output, self._input_signature))
        return output

    @property
    def towers(self) -> TowerTensorHandles:
        """Handles of every tower built so far, by index or by tower (name scope) name."""
        return TowerTensorHandles(self._handles)

    @property
    def input_signature(self):
        return self._input_signature


TowerFuncWrapper = TowerFunc


class TowerTensorHandles:
    """A list of :class:`TowerTensorHandle`, indexable by position or by tower name."""

    def __init__(self, handles):
        self._handles = list(handles)
        self._by_name = {h.ns_name: h for h in self._handles}

    def __len__(self):
        return len(self._handles)

    def __getitem__(self, name_or_index):
        if isinstance(name_or_index, int):
            return self._handles[name_or_index]
        return self._by_name[name_or_index]

    def training(self) -> TowerTensorHandles:
        return TowerTensorHandles([h for h in self._handles if h.is_training])

    def inference(self) -> TowerTensorHandles:
        return TowerTensorHandles([h for h in self._handles if not h.is_training])


class TowerTensorHandle:
    """The inputs, outputs and tensors of one tower."""

    def __init__(self, ctx, inputs, outputs, input_signature=None):
        self._ctx = ctx
        self._inputs = list(inputs)
        self._outputs = outputs
        self._input_by_name = {}
        if input_signature is not None:
            self._input_by_name = {get_op_tensor_name(s.name)[1]: t for s, t in zip(input_signature, inputs, strict=True)}

    @property
    def ns_name(self):
        return self._ctx.ns_name

    @property
    def vs_name(self):
        return self._ctx.vs_name

    @property
    def is_training(self):
        return self._ctx.is_training

    @property
    def inputs(self):
        return self._inputs

    @property
    def outputs(self):
        return self._outputs

    def get_tensor(self, name):
        """The tensor ``name`` (no tower prefix) of this tower; an input-signature name gives the
        tensor this tower actually received (e.g. a dequeued batch); otherwise a variable."""
        name = get_op_tensor_name(name)[1]
        if name in self._input_by_name:
            return self._input_by_name[name]
        full = f"{self.ns_name}/{name}" if self.ns_name else name
        try:
            return get_op_or_tensor_by_name(full)
        except KeyError:
            return self.get_variable(name)

    def get_tensors(self, names):
        return [self.get_tensor(n) for n in names]

    __getitem__ = get_tensor

    def get_variable(self, name):
        name = get_op_tensor_name(name)[1]
        return get_op_or_tensor_by_name(f"{self.vs_name}/{name}" if self.vs_name else name)

    def get_variables(self, names):
        return [self.get_variable(n) for n in names]

    def get_collection(self, key):
        return self._ctx.get_collection_in_tower(key)

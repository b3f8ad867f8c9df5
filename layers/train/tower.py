"""Trainers whose model is a tower function (``ModelDesc.build_graph``) built under TowerContexts."""
from __future__ import annotations

import functools

from .._compat import gpu_count, tf, tfv1
from ..tfutils.tower import TowerFunc, get_current_tower_context
from ..utils import logger
from .base import Trainer

__all__ = ["TowerTrainer", "SingleCostTrainer"]


class TowerTrainer(Trainer):
    """A trainer with a :class:`TowerFunc` (``tower_func``), whose towers are ``trainer.towers``."""

    _tower_func = None

    @property
    def tower_func(self):
        return self._tower_func

    @tower_func.setter
    def tower_func(self, val):
        if self._tower_func is not None:
            raise RuntimeError("tower_func can only be set once")
        if not isinstance(val, TowerFunc):
            raise TypeError(f"tower_func must be a TowerFunc, got {type(val).__name__}")
        self._tower_func = val

    @property
    def input_signature(self):
        return self.tower_func.input_signature

    @property
    def towers(self):
        """Handles of the towers built so far: ``trainer.towers.training()[0]['cost']``."""
        return self.tower_func.towers

    def get_predictor(self, input_names, output_names, device=0):
        """A callable running the model for inference inside the training session.

        Builds (once per device) the tower function under ``PredictTowerContext('tower-pred-<device>')``
        with the training variables, fed by placeholders. Call it while building the graph (e.g. in
        a callback's ``_setup_graph``) and use it after the session exists:
        ``pred = trainer.get_predictor(['input'], ['prob']); prob, = pred(images)``.

        Args:
            input_names: inputs to feed (names of the input signature).
            output_names: tensors to return, without the tower prefix.
            device: GPU index for the tower (used when that GPU exists); -1 for ``/cpu:0``.
        """
        from ..input_source import PlaceholderInput
        from ..tower import PredictTowerContext

        name = f"tower-pred-{device}" if device >= 0 else "tower-pred-cpu"
        try:
            tower = self.tower_func.towers[name]
        except KeyError:
            inp = PlaceholderInput()
            inp.setup(self.input_signature)
            dev = f"/gpu:{device}" if 0 <= device < gpu_count() else "/cpu:0"
            with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True), tfv1.device(dev), \
                    PredictTowerContext(name, vs_name=self._vs_name_for_predictor(device)):
                self.tower_func(*inp.get_input_tensors())
            tower = self.tower_func.towers[name]
        return _TrainerPredictor(self, tower.get_tensors(input_names), tower.get_tensors(output_names))

    def _vs_name_for_predictor(self, device):
        towers = self.towers.training()
        if 0 <= device < len(towers):
            return towers[device].vs_name
        return towers[0].vs_name


class _TrainerPredictor:
    """``pred(*arrays)`` -> list of output arrays, run in the trainer's session."""

    def __init__(self, trainer, inputs, outputs):
        self._trainer, self.input_tensors, self.output_tensors = trainer, inputs, outputs

    def __call__(self, *arrays):
        if len(arrays) != len(self.input_tensors):
            raise ValueError(f"predictor takes {len(self.input_tensors)} inputs "
                             f"({[t.name for t in self.input_tensors]}), got {len(arrays)}")
        if self._trainer.sess is None:
            raise RuntimeError("the trainer's session does not exist yet: call the predictor from before_train on")
        return self._trainer.sess.run(self.output_tensors, dict(zip(self.input_tensors, arrays, strict=True)))


def _memoized(fn):
    cache = []

    @functools.wraps(fn)
    def wrapper():
        if not cache:
            cache.append(fn())
        return cache[0]
    return wrapper


class SingleCostTrainer(TowerTrainer):
    """Trainer for a tower function returning one scalar cost, minimised by one optimizer.

    ``setup_graph(input_signature, input, get_cost_fn, get_opt_fn)`` builds the training graph;
    subclasses implement ``_setup_graph`` (one tower or several).
    """

    COLOCATE_GRADIENTS_WITH_OPS = True
    GATE_GRADIENTS = False
    AGGREGATION_METHOD = tf.AggregationMethod.DEFAULT

    def setup_graph(self, input_signature, input, get_cost_fn, get_opt_fn):
        """Build the training graph.

        Args:
            input_signature: list of ``tf.TensorSpec``.
            input: an InputSource (see :mod:`layers.input_source`).
            get_cost_fn: builds the model from input tensors and returns the cost (scalar).
            get_opt_fn: returns a ``tf.compat.v1.train.Optimizer``; called once.
        """
        if tf.executing_eagerly():
            raise RuntimeError("The trainer builds a graph: run it inside `with tf.Graph().as_default():` "
                               "or use launch_train_with_config(), which creates one")
        if input.setup_done():
            raise RuntimeError("This InputSource was already set up (by another trainer?)")
        self.tower_func = TowerFunc(get_cost_fn, input_signature)
        self._input_source = input
        get_opt_fn = _memoized(get_opt_fn)
        input_callbacks = input.setup(input_signature)
        train_callbacks = self._setup_graph(input, self.tower_func, get_opt_fn)
        self.register_callback(list(input_callbacks) + list(train_callbacks))

    def _setup_graph(self, input, get_cost_fn, get_opt_fn):
        raise NotImplementedError

    def _make_get_grad_fn(self, input, get_cost_fn, get_opt_fn):
        """A function that, under a TowerContext, builds the tower on fresh input tensors and returns
        its ``[(gradient, variable)]`` (None gradients dropped)."""

        def get_grad_fn():
            ctx = get_current_tower_context()
            cost = get_cost_fn(*input.get_input_tensors())
            if not isinstance(cost, tf.Tensor) or cost.shape.ndims != 0:
                raise ValueError("build_graph must return the total cost (a scalar tensor) when training; got "
                                 f"{cost!r}")
            if ctx.has_own_variables:
                varlist = ctx.get_collection_in_tower(tfv1.GraphKeys.TRAINABLE_VARIABLES)
            else:
                varlist = tfv1.trainable_variables()
            opt = get_opt_fn()
            if not isinstance(opt, tfv1.train.Optimizer):
                raise TypeError(f"optimizer() must return a tf.compat.v1.train.Optimizer, got {type(opt).__name__}")
            grads = opt.compute_gradients(cost, var_list=varlist, gate_gradients=self.GATE_GRADIENTS,
                                          colocate_gradients_with_ops=self.COLOCATE_GRADIENTS_WITH_OPS,
                                          aggregation_method=self.AGGREGATION_METHOD)
            kept = [(g, v) for g, v in grads if g is not None]
            dropped = [v.op.name for g, v in grads if g is None]
            if dropped:
                logger.warning("No gradient w.r.t. %d trainable variables: %s", len(dropped), ", ".join(dropped))
            if not kept:
                raise ValueError("The cost has no gradient with respect to any trainable variable")
            return kept

        return get_grad_fn

"""Tower contexts: tell layers whether they are building a training or an inference graph.

Same rules as tensorpack 0.11 (``TowerContext`` factory, ``TrainTowerContext``,
``PredictTowerContext``, no nesting, ``ns_name``/``vs_name``), with these documented differences:

* the current context is per thread (tensorpack keeps one module global);
* every entered scope is restored in ``finally``;
* errors are ``ValueError``/``RuntimeError`` with messages instead of bare assertions;
* reusing a non-empty tower name in a graph raises "Name conflict" explicitly.
"""
from __future__ import annotations

import threading

from ._compat import tf, tfv1

__all__ = ["TowerContext", "TrainTowerContext", "PredictTowerContext", "BaseTowerContext",
           "get_current_tower_context", "require_tower_context"]

_local = threading.local()
MOVING_SUMMARY_OPS_KEY = "MOVING_SUMMARY_OPS"


def get_current_tower_context():
    """The active tower context of this thread, or ``None``."""
    return getattr(_local, "ctx", None)


def require_tower_context(what: str):
    """Return the current tower context or raise an error that says how to provide one."""
    ctx = get_current_tower_context()
    if ctx is None:
        raise RuntimeError(f"{what} needs a TowerContext to know whether it is training: wrap the model in "
                           "`with TowerContext('', is_training=...)` (or pass `training=` explicitly where "
                           "the layer accepts it)")
    return ctx


class BaseTowerContext:
    """Common part of the tower contexts. Use :func:`TowerContext` to create one."""

    is_training: bool = False

    def __init__(self, ns_name: str, vs_name: str = ""):
        if not isinstance(ns_name, str):
            raise TypeError(f"TowerContext: tower name must be a str, got {type(ns_name).__name__}")
        if vs_name and not ns_name:
            raise ValueError("TowerContext: vs_name requires a non-empty tower (ns) name")
        self._name = ns_name
        self._vs_name = vs_name
        self._scopes = []
        self._collections_at_entry = {}

    # --- properties -------------------------------------------------------------------------
    @property
    def name(self):
        return self._name

    @property
    def ns_name(self):
        return self._name

    @property
    def vs_name(self):
        return self._vs_name

    @property
    def is_main_training_tower(self) -> bool:
        return False

    @property
    def has_own_variables(self) -> bool:
        return self._has_own_variables

    def _frozen_collections(self):
        return []

    def get_collection_in_tower(self, key):
        """Items added to graph collection ``key`` while this tower was being built."""
        start = self._collections_at_entry.get(key, 0)
        return tfv1.get_collection(key)[start:]

    # --- enter / exit -----------------------------------------------------------------------
    def _get_scopes(self):
        if not self._name:
            return [tfv1.variable_scope(tfv1.get_variable_scope())]
        ret = []
        if self._vs_name:
            ret.append(tfv1.variable_scope(self._vs_name))
        else:
            ret.append(tfv1.variable_scope(tfv1.get_variable_scope()))
        ret.append(tfv1.name_scope(self._name + "/"))
        return ret

    def _check_entry(self):
        pass

    def __enter__(self):
        if get_current_tower_context() is not None:
            raise RuntimeError(f"Cannot nest TowerContext: entering {self._name!r} inside "
                               f"{get_current_tower_context().name!r}")
        if tf.executing_eagerly():
            raise RuntimeError("TowerContext builds graph-mode models: enter `with tf.Graph().as_default():` first")
        graph = tfv1.get_default_graph()
        self._check_entry()
        self._has_own_variables = self._compute_has_own_variables()
        if self._name:
            # The tower's name scope is absolute, so check (and later mark) the name at the root.
            with graph.name_scope(None):
                if graph.unique_name(self._name, mark_as_used=False) != self._name:
                    raise ValueError(f"TowerContext: Name conflict: tower name {self._name!r} is already used "
                                     "in this graph")
        self._graph = graph
        self._frozen = {k: list(tfv1.get_collection(k)) for k in self._frozen_collections()}
        keys = graph.get_all_collection_keys()
        self._collections_at_entry = {k: len(tfv1.get_collection(k)) for k in keys}
        self._trainable_at_entry = len(tfv1.trainable_variables())
        entered = []
        try:
            for s in self._get_scopes():
                s.__enter__()
                entered.append(s)
        except BaseException:
            for s in reversed(entered):
                s.__exit__(None, None, None)
            raise
        self._scopes = entered
        if self._name:
            with graph.name_scope(None):
                graph.unique_name(self._name, mark_as_used=True)
        _local.ctx = self
        return self

    def __exit__(self, exc_type, exc, tb):
        _local.ctx = None
        try:
            for s in reversed(self._scopes):
                s.__exit__(exc_type, exc, tb)
        finally:
            self._scopes = []
            for k, items in self._frozen.items():
                coll = self._graph.get_collection_ref(k)
                del coll[:]
                coll.extend(items)
        if exc_type is None and not self._has_own_variables:
            with self._graph.as_default():
                new = tfv1.trainable_variables()[self._trainable_at_entry:]
            if new:
                raise ValueError(
                    f"Tower {self._name!r} reuses variables but created new trainable variables "
                    f"{[v.name for v in new]}; create variables with tf.compat.v1.get_variable so reuse works")
        return False

    def __str__(self):
        return f"{type(self).__name__}(name={self._name!r}, is_training={self.is_training})"


class TrainTowerContext(BaseTowerContext):
    """Context for building a training tower. ``index``/``total`` describe data-parallel replicas;
    only tower 0 (the main training tower) updates BatchNorm statistics."""

    is_training = True

    def __init__(self, ns_name: str, vs_name: str = "", index: int = 0, total: int = 1):
        super().__init__(ns_name, vs_name)
        if not (0 <= index < total):
            raise ValueError(f"TrainTowerContext: index must be in [0, total={total}), got {index}")
        self.index = index
        self.total = total

    @property
    def is_main_training_tower(self):
        return self.index == 0

    def _check_entry(self):
        vs = tfv1.get_variable_scope()
        if vs.name:
            raise ValueError(f"TrainTowerContext cannot be entered inside a variable scope (current scope "
                             f"{vs.name!r}); enter the variable scope inside the tower instead")
        if self._vs_name and vs.reuse:
            raise ValueError("TrainTowerContext: vs_name cannot be used under reuse=True")

    def _compute_has_own_variables(self):
        return (not tfv1.get_variable_scope().reuse) and (self.index == 0 or bool(self._vs_name))

    def _frozen_collections(self):
        if self.index > 0:
            return [tfv1.GraphKeys.SUMMARIES, MOVING_SUMMARY_OPS_KEY]
        return []


class PredictTowerContext(BaseTowerContext):
    """Context for building an inference tower: BatchNorm uses its moving statistics, and
    ``UPDATE_OPS``/summaries added inside are discarded on exit."""

    is_training = False

    def _compute_has_own_variables(self):
        return not tfv1.get_variable_scope().reuse

    def _frozen_collections(self):
        return [tfv1.GraphKeys.SUMMARIES, MOVING_SUMMARY_OPS_KEY, tfv1.GraphKeys.UPDATE_OPS]


def TowerContext(tower_name: str, is_training: bool, vs_name: str = ""):
    """Create a :class:`TrainTowerContext` (``is_training=True``) or :class:`PredictTowerContext`.

    ``with TowerContext('', is_training=True):`` is how a single-device model is built.
    """
    if not isinstance(is_training, bool):
        raise TypeError(f"TowerContext: is_training must be a bool, got {is_training!r}")
    if is_training:
        return TrainTowerContext(tower_name, vs_name=vs_name)
    return PredictTowerContext(tower_name, vs_name=vs_name)

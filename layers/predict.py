"""Predictors: build a model for inference in its own graph and session, restore it, run it.

``PredictConfig`` says what to build and restore; ``OfflinePredictor`` is one graph + session with a
fast, thread-safe call (``Session.make_callable``); ``MultiDevicePredictor`` builds one replica per
device in one graph so that each device can be driven from its own thread.

Differences from tensorpack (improvements):

* strict by default: a model variable the ``session_init`` did not restore is an error, instead of
  silently predicting with random weights (``strict=False`` opts out);
* inputs are checked on every call (count, dtype, shape) with errors naming the input;
* the session uses every core (tensorpack's default config had ``intra_op_parallelism_threads=1``,
  issue #446);
* ``MultiDevicePredictor`` exposes every replica (tensorpack's ``MultiTowerOfflinePredictor.__call__``
  used only the first GPU, issue #1135) and its ``__call__`` rotates over them;
* no ``return_input``, ``session_creator`` or ``create_graph`` options.
"""
from __future__ import annotations

import difflib
import itertools
import logging

import numpy as np

from ._compat import gpu_count, kernel_policy, tf, tfv1
from .model_desc import ModelDescBase
from .sessinit import SessionInit, SmartInit, is_float_dtype, is_training_name
from .tower import PredictTowerContext

__all__ = ["PredictConfig", "OfflinePredictor", "MultiDevicePredictor", "PredictorReplica"]

logger = logging.getLogger(__name__)


class _FunctionModel(ModelDescBase):
    """Adapts ``tower_func`` + ``input_signature`` to the ModelDesc interface."""

    def __init__(self, tower_func, input_signature):
        self._func = tower_func
        self._sig = list(input_signature)

    def inputs(self):
        return self._sig

    def build_graph(self, *inputs):
        return self._func(*inputs)


def _check_names(arg, names, allow_none=False):
    if names is None and allow_none:
        return None
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names or \
            not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"PredictConfig: {arg} must be a non-empty list of tensor names (str), got {names!r}")
    return list(names)


class PredictConfig:
    """What a predictor builds and how it restores it.

    Args:
        model: a :class:`~layers.ModelDesc` (its ``inputs()`` and ``build_graph``); or give
            ``tower_func`` + ``input_signature`` instead.
        input_names: the tensors a call feeds, in call order; default: every input of the
            signature, in order. A name without ``:k`` means ``:0``.
        output_names: the tensors a call returns, in order (required, non-empty).
        session_init: what to restore: a :class:`~layers.SessionInit` or anything
            :func:`~layers.SmartInit` accepts (path, dict, list); default None restores nothing.
        session_config: a ``tf.compat.v1.ConfigProto``; default: soft placement on, GPU memory
            allocated on demand (allow_growth), thread pools sized by TensorFlow (all cores).
        tower_func: a function building the graph from input tensors (instead of ``model``).
        input_signature: list of ``tf.TensorSpec`` with names, required with ``tower_func``.
        strict: True (default): every variable of the built graph (GLOBAL_VARIABLES, except
            training state such as ``global_step``) must be restored by ``session_init``, else the
            predictor raises naming the missing ones. False: variables not restored keep their
            initial values (benchmarks, fine-tuning starts).
        intra_op_threads, inter_op_threads: override the session's thread pools; None (default)
            keeps ``session_config``'s value, whose default 0 lets TensorFlow use every core.
    """

    def __init__(self, *, model=None, input_names=None, output_names=None, session_init=None,
                 session_config=None, tower_func=None, input_signature=None, strict=True,
                 intra_op_threads=None, inter_op_threads=None):
        if (model is None) == (tower_func is None):
            raise ValueError("PredictConfig: give exactly one of model= or tower_func=")
        if tower_func is not None:
            if not callable(tower_func):
                raise TypeError(f"PredictConfig: tower_func must be callable, got {type(tower_func).__name__}")
            if not input_signature:
                raise ValueError("PredictConfig: tower_func needs input_signature (a list of named tf.TensorSpec)")
            model = _FunctionModel(tower_func, input_signature)
        elif input_signature is not None:
            raise ValueError("PredictConfig: input_signature is only used with tower_func; the model has inputs()")
        if not (hasattr(model, "get_input_signature") and hasattr(model, "build_graph")):
            raise TypeError(f"PredictConfig: model must be a ModelDesc, got {type(model).__name__}")
        self.model = model
        signature = model.get_input_signature()   # validates names early
        self.input_names = _check_names("input_names", input_names, allow_none=True) or [s.name for s in signature]
        self.output_names = _check_names("output_names", output_names)
        self.session_init = session_init if isinstance(session_init, SessionInit) else SmartInit(session_init)
        if session_config is not None and not isinstance(session_config, tfv1.ConfigProto):
            raise TypeError(f"PredictConfig: session_config must be a tf.compat.v1.ConfigProto, "
                            f"got {type(session_config).__name__}")
        self.session_config = session_config
        self.strict = bool(strict)
        for arg, val in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 0):
                raise ValueError(f"PredictConfig: {arg} must be None or an int >= 0 (0 = all cores), got {val!r}")
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads

    def make_session_config(self):
        """The ConfigProto predictors open their session with (a copy; see ``session_config``)."""
        cfg = tfv1.ConfigProto()
        if self.session_config is not None:
            cfg.CopyFrom(self.session_config)
        else:
            cfg.allow_soft_placement = True
            cfg.gpu_options.allow_growth = True
        if self.intra_op_threads is not None:
            cfg.intra_op_parallelism_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            cfg.inter_op_parallelism_threads = self.inter_op_threads
        return cfg


# ------------------------------------------------------------------------------------------------
def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def _get_tensor(graph, name, what, scope=""):
    """``scope/name`` if it exists, else ``name`` (inputs may live outside the replica scope)."""
    candidates = [scope + name, name] if scope else [name]
    for cand in candidates:
        try:
            t = graph.get_tensor_by_name(_tensor_name(cand))
        except (KeyError, ValueError):
            continue
        if t.dtype == tf.resource:   # a resource variable's handle: fetch its value, as tensorpack (ref vars) did
            for v in graph.get_collection(tfv1.GraphKeys.GLOBAL_VARIABLES):
                if what == "output" and v.handle.name == t.name:
                    with graph.as_default():
                        return v.value()
            raise ValueError(f"PredictConfig: {what} name {name!r} is a resource handle, not a value")
        return t
    ops = [op.name for op in graph.get_operations()]
    close = difflib.get_close_matches(scope + name.split(":")[0], ops, n=3)
    hint = f"; similar names: {close}" if close else ""
    raise ValueError(f"PredictConfig: {what} name {name!r} is not a tensor in the built graph{hint}")


def _safe_cast(src: np.dtype, dst: np.dtype) -> bool:
    """numpy 'safe' casts, plus float -> narrower float (float64 arrays are numpy's default)."""
    return np.can_cast(src, dst, "safe") or (is_float_dtype(src) and is_float_dtype(dst))


class _Runner:
    """One compiled call: input checks, then ``Session.make_callable`` (thread-safe)."""

    def __init__(self, session, input_tensors, output_tensors, input_specs, output_names):
        self.input_specs = input_specs
        self.input_names = [s.name for s in input_specs]
        self.output_names = list(output_names)
        self._n = len(input_specs)
        # per input: (name, dtype, rank or None, [(axis, dim)] of the fixed dims, printable shape)
        self._checks = []
        for s in input_specs:
            dims = None if s.shape.rank is None else s.shape.as_list()
            fixed = [] if dims is None else [(i, d) for i, d in enumerate(dims) if d is not None]
            self._checks.append((s.name, np.dtype(s.dtype.as_numpy_dtype), None if dims is None else len(dims),
                                 fixed, "unknown" if dims is None else str(dims)))
        self._fn = session.make_callable(list(output_tensors), feed_list=list(input_tensors))

    def _check(self, i, x):
        name, dtype, rank, fixed, shape_str = self._checks[i]
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype != dtype:
            if not _safe_cast(x.dtype, dtype):
                raise ValueError(f"input {name!r}: expected dtype {dtype.name}, got {x.dtype.name} "
                                 "(not safely castable)")
            x = x.astype(dtype)
        if rank is not None:
            if x.ndim != rank:
                raise ValueError(f"input {name!r}: expected shape {shape_str} (rank {rank}), "
                                 f"got shape {list(x.shape)}")
            shape = x.shape
            for axis, dim in fixed:
                if shape[axis] != dim:
                    raise ValueError(f"input {name!r}: expected shape {shape_str}, got shape {list(shape)}")
        return x

    def __call__(self, *arrays):
        if len(arrays) != self._n:
            raise ValueError(f"predictor: expected {self._n} input(s) {self.input_names}, got {len(arrays)}")
        return self._fn(*[self._check(i, x) for i, x in enumerate(arrays)])

    def predict_batch(self, feeds):
        if not hasattr(feeds, "keys"):
            raise TypeError(f"predict_batch: expected a dict input name -> array, got {type(feeds).__name__}")
        missing = [n for n in self.input_names if n not in feeds]
        extra = [k for k in feeds if k not in self.input_names]
        if missing or extra:
            raise ValueError(f"predict_batch: expected inputs {self.input_names}; missing {missing}, "
                             f"unexpected {extra}")
        outputs = self(*[feeds[n] for n in self.input_names])
        return dict(zip(self.output_names, outputs, strict=True))


def _input_specs(graph, signature, input_names, tensors, scope=""):
    by_name = {scope + s.name + ":0": s for s in signature}
    specs = []
    for name, t in zip(input_names, tensors, strict=True):
        s = by_name.get(t.name)
        specs.append(tf.TensorSpec(s.shape if s else t.shape, s.dtype if s else t.dtype.base_dtype, name))
    return specs


def _restore(config, graph, session):
    """Initialise every variable, then restore; strict mode checks nothing was left out."""
    with graph.as_default():
        init = tf.group(tfv1.global_variables_initializer(), tfv1.local_variables_initializer(),
                        tfv1.tables_initializer())
        config.session_init._setup_graph()
        variables = [v.op.name for v in tfv1.global_variables()]
    session.run(init)
    report = config.session_init._run_init(session)
    if config.strict:
        done = set(report.restored)
        left = [n for n in variables if n not in done and not is_training_name(n)]
        if left:
            raise ValueError(f"Predictor (strict=True): {len(left)} model variable(s) were not restored by the "
                             f"session_init ({report.source or 'nothing'}): {left}. Pass a checkpoint that "
                             "has them, or strict=False to run with their initial (random) values")
    return report


def _build_single(config):
    """Graph + restored session for one predictor (graph not finalized)."""
    graph = tf.Graph()
    model = config.model
    with graph.as_default():
        placeholders = model.create_placeholders()
        with PredictTowerContext(""):
            model.build_graph(*placeholders)
        inputs = [_get_tensor(graph, n, "input") for n in config.input_names]
        outputs = [_get_tensor(graph, n, "output") for n in config.output_names]
        specs = _input_specs(graph, model.get_input_signature(), config.input_names, inputs)
    session = tfv1.Session(graph=graph, config=config.make_session_config())
    try:
        report = _restore(config, graph, session)
    except BaseException:
        session.close()
        raise
    return graph, session, inputs, outputs, specs, report


def variable_bytes(graphs) -> int:
    """Bytes of every global variable in ``graphs`` (a variable of unknown shape counts 0)."""
    total = 0
    for graph in graphs:
        for v in graph.get_collection(tfv1.GraphKeys.GLOBAL_VARIABLES):
            n = v.shape.num_elements()
            total += (n or 0) * v.dtype.base_dtype.size
    return total


class _SessionOwner:
    """A predictor owning ``self.session``: ``close()`` and use as a context manager."""

    def close(self):
        """Close the session (idempotent); the predictor cannot be called afterwards."""
        self.session.close()

    def variable_bytes(self) -> int:
        """Bytes held by the graph's global variables (weights and statistics such as BatchNorm's EMA)."""
        return variable_bytes([self.graph])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OfflinePredictor(_SessionOwner):
    """Build ``config``'s model in a new graph and session, restore it, and call it.

    ``pred(x1, x2, ...)`` takes arrays in ``input_names`` order and returns a list of arrays in
    ``output_names`` order; ``pred.predict_batch({name: array})`` returns ``{output_name: array}``.
    Calls are thread-safe and may run concurrently (the graph is finalized after building).
    Inputs are checked first: count, dtype (numpy 'safe' casts and float narrowing are applied,
    anything else is refused) and every dimension the signature fixes, with ``ValueError`` naming
    the input, what was expected and what was received.

    Attributes: ``graph``, ``session``, ``input_specs`` (``tf.TensorSpec`` per input),
    ``input_names``, ``output_names``, ``input_tensors``, ``output_tensors`` (to run the graph
    yourself) and ``restore_report`` (:class:`~layers.RestoreReport`).
    """

    def __init__(self, config: PredictConfig):
        if not isinstance(config, PredictConfig):
            raise TypeError(f"OfflinePredictor: expected a PredictConfig, got {type(config).__name__}")
        self.config = config
        graph, session, inputs, outputs, specs, report = _build_single(config)
        self.graph, self.session, self.restore_report = graph, session, report
        self.input_tensors, self.output_tensors = inputs, outputs
        try:
            self._runner = _Runner(session, inputs, outputs, specs, config.output_names)
        except BaseException:
            session.close()
            raise
        graph.finalize()
        self.input_specs = specs
        self.input_names = list(config.input_names)
        self.output_names = list(config.output_names)

    def __call__(self, *arrays):
        return self._runner(*arrays)

    def predict_batch(self, feeds) -> dict:
        """``{input_name: array}`` -> ``{output_name: array}`` (keys exactly as in the config)."""
        return self._runner.predict_batch(feeds)



# ------------------------------------------------------------------------------------------------
def _canonical_device(dev: str) -> str:
    spec = tf.DeviceSpec.from_string(dev)
    if spec.device_type is None:
        raise ValueError(f"MultiDevicePredictor: device {dev!r} has no type; expected e.g. '/gpu:0' or '/cpu:0'")
    return f"{spec.device_type.upper()}:{spec.device_index or 0}"


class PredictorReplica:
    """One replica of a :class:`MultiDevicePredictor`: callable like an :class:`OfflinePredictor`.

    Attributes: ``device`` (as requested), ``index``, ``scope`` (name scope of its ops, e.g.
    ``'replica1/'``), ``input_specs``, ``input_names``, ``output_names``, ``input_tensors``,
    ``output_tensors``.
    """

    def __init__(self, index, device, scope, runner, inputs, outputs):
        self.index, self.device, self.scope = index, device, scope
        self._runner = runner
        self.input_specs = runner.input_specs
        self.input_names = runner.input_names
        self.output_names = runner.output_names
        self.input_tensors, self.output_tensors = inputs, outputs

    def __call__(self, *arrays):
        return self._runner(*arrays)

    def predict_batch(self, feeds) -> dict:
        return self._runner.predict_batch(feeds)

    def __repr__(self):
        return f"PredictorReplica(index={self.index}, device={self.device!r})"


class MultiDevicePredictor(_SessionOwner):
    """One graph and session with one replica of the model per device, sharing variables.

    Args:
        config: the :class:`PredictConfig`.
        devices: device strings; default None = ``'/gpu:i'`` for every GPU TensorFlow sees, or
            ``['/cpu:0']`` without GPUs. Several CPU devices (``'/cpu:1'`` ...) are logical devices
            sharing the cores: the session gets ``device_count={'CPU': n}`` unless the config's
            ``session_config`` already sets a CPU count.

    Replica ``i`` is built under ``tf.device(devices[i])`` in ``PredictTowerContext('replica{i}')``
    (op names ``replica{i}/...``, its own input placeholders ``replica{i}/<input>``); CPU replicas
    use CPU-portable kernels, GPU replicas native ones (see :func:`~layers.kernel_policy`). The
    variables are created once, on the first device, restored once, and read by every replica
    (so a replica on another GPU copies the weights from the first one on each call, as in
    tensorpack). To keep all devices busy, drive each of ``.replicas`` from its own thread;
    ``pred(...)`` itself rotates over the replicas call by call.

    Attributes: ``replicas`` (list of :class:`PredictorReplica`), ``devices``, ``graph``,
    ``session``, ``input_specs``, ``input_names``, ``output_names``, ``restore_report``.
    """

    def __init__(self, config: PredictConfig, devices=None):
        if not isinstance(config, PredictConfig):
            raise TypeError(f"MultiDevicePredictor: expected a PredictConfig, got {type(config).__name__}")
        if devices is None:
            devices = [f"/gpu:{i}" for i in range(gpu_count())] or ["/cpu:0"]
        if isinstance(devices, str) or not devices:
            raise ValueError(f"MultiDevicePredictor: devices must be a non-empty list of device strings, got {devices!r}")
        self.devices = list(devices)
        canon = [_canonical_device(d) for d in self.devices]
        if len(set(canon)) != len(canon):
            raise ValueError(f"MultiDevicePredictor: devices must be distinct, got {self.devices}")
        self.config = config
        model = config.model
        signature = model.get_input_signature()
        graph = tf.Graph()
        built = []
        with graph.as_default():
            for i, dev in enumerate(self.devices):
                scope = f"replica{i}/"
                policy = "native" if canon[i].startswith("GPU") else "portable"
                with tf.device(dev), kernel_policy(policy), \
                        tfv1.variable_scope(tfv1.get_variable_scope(), reuse=i > 0), \
                        PredictTowerContext(f"replica{i}"):
                    placeholders = model.create_placeholders()
                    model.build_graph(*placeholders)
                inputs = [_get_tensor(graph, n, "input", scope) for n in config.input_names]
                outputs = [_get_tensor(graph, n, "output", scope) for n in config.output_names]
                specs = _input_specs(graph, signature, config.input_names, inputs, scope)
                built.append((scope, inputs, outputs, specs))
        session_config = config.make_session_config()
        n_cpus = max((int(c.split(":")[1]) + 1 for c in canon if c.startswith("CPU")), default=1)
        if n_cpus > 1 and "CPU" not in session_config.device_count:
            session_config.device_count["CPU"] = n_cpus   # logical CPU devices for '/cpu:1', ...
        session = tfv1.Session(graph=graph, config=session_config)
        try:
            available = {_canonical_device(d.name) for d in session.list_devices()}
            absent = [d for d, c in zip(self.devices, canon, strict=True) if c not in available]
            if absent:
                raise ValueError(f"MultiDevicePredictor: device(s) {absent} not available in the session (it has "
                                 f"{sorted(available)})")
            self.restore_report = _restore(config, graph, session)
            self.replicas = [
                PredictorReplica(i, dev, scope, _Runner(session, ins, outs, specs, config.output_names), ins, outs)
                for i, (dev, (scope, ins, outs, specs)) in enumerate(zip(self.devices, built, strict=True))]
        except BaseException:
            session.close()
            raise
        graph.finalize()
        self.graph, self.session = graph, session
        self.input_names = list(config.input_names)
        self.output_names = list(config.output_names)
        self.input_specs = self.replicas[0].input_specs
        self._next = itertools.count()

    def __call__(self, *arrays):
        """Run on the next replica (round-robin; thread-safe)."""
        return self.replicas[next(self._next) % len(self.replicas)](*arrays)

    def predict_batch(self, feeds) -> dict:
        return self.replicas[next(self._next) % len(self.replicas)].predict_batch(feeds)


"""The trainers: one tower (:class:`SimpleTrainer`) or data-parallel towers with synchronous,
averaged gradients (:class:`SyncMultiGPUTrainerParameterServer`, :class:`SyncMultiGPUTrainerReplicated`).

Data parallelism as in tensorpack: tower ``k`` is built under
``TrainTowerContext('tower<k>', index=k, total=N)`` on its device and dequeues its own batch
from the (queue-based) input, so the global batch is N times the DataFlow's batch. The gradients
of all towers are averaged, which for a mean loss equals the gradient of the whole global batch.

* ParameterServer: one set of variables (towers reuse tower 0's) and one optimizer update.
* Replicated: tower 0 owns the variables under their plain names; towers k > 0 hold copies under
  ``tower<k>/`` in LOCAL_VARIABLES (so checkpoints keep tensorpack's plain names). The copies are
  set equal to tower 0's before training (and again after every epoch), each tower applies the
  same averaged gradient to its copy, so all copies stay equal. Each replica has its own
  optimizer object, hence its own non-slot state (Adam's ``beta1_power``), also local and synced.

Devices: tower k runs on ``/gpu:<id>`` when TensorFlow sees that GPU, else on ``/cpu:0``.
``devices=[...]`` (an extension) pins towers to explicit devices, e.g. logical CPUs
``['/cpu:0', '/cpu:1']`` (the session config must then create 2 CPU devices).
"""
from __future__ import annotations

import contextlib
import copy
import re

from .._compat import gpu_count, tf, tfv1
from ..callbacks import RunOp
from ..input_source import FeedfreeInput
from ..tfutils.tower import TrainTowerContext
from ..tfutils.varreplace import custom_getter_scope
from ..utils import logger
from .tower import SingleCostTrainer

__all__ = ["SimpleTrainer", "NoOpTrainer", "SyncMultiGPUTrainerParameterServer", "SyncMultiGPUTrainerReplicated",
           "SyncMultiGPUTrainer"]

_VARIABLE_OPS = ("Variable", "VariableV2", "VarHandleOp")


class SimpleTrainer(SingleCostTrainer):
    """One tower (``TrainTowerContext('')``: tensors keep their plain names), one device."""

    def _setup_graph(self, input, get_cost_fn, get_opt_fn):
        logger.info("Building graph for a single training tower ...")
        with TrainTowerContext(""):
            grads = self._make_get_grad_fn(input, get_cost_fn, get_opt_fn)()
            self.train_op = get_opt_fn().apply_gradients(grads, name="train_op")
        return []


class NoOpTrainer(SimpleTrainer):
    """Builds the graph but does nothing in a step (to run only the callbacks)."""

    def run_step(self):
        self.hooked_sess.run([])


def _gpu_ids(gpus):
    if isinstance(gpus, bool) or not isinstance(gpus, (int, list, tuple)):
        raise TypeError(f"gpus must be an int (number of towers) or a list of GPU ids, got {gpus!r}")
    if isinstance(gpus, int):
        if gpus <= 0:
            raise ValueError(f"gpus must be positive, got {gpus}")
        return list(range(gpus))
    if not gpus:
        raise ValueError("gpus: empty list")
    return list(gpus)


def _tower_devices(ids, devices):
    if devices is not None:
        if len(devices) != len(ids):
            raise ValueError(f"devices: {len(devices)} devices for {len(ids)} towers")
        return list(devices)
    n = gpu_count()
    return [f"/gpu:{k}" if k < n else "/cpu:0" for k in ids]


@contextlib.contextmanager
def _local_variables(enable):
    """Variables created in the block go to LOCAL_VARIABLES instead of GLOBAL_VARIABLES."""
    if not enable:
        yield
        return

    def to_local(getter, name, *args, **kwargs):      # TF passes the next getter as `getter=`
        colls = set(kwargs.get("collections") or [tfv1.GraphKeys.GLOBAL_VARIABLES])
        colls.discard(tfv1.GraphKeys.GLOBAL_VARIABLES)
        colls.add(tfv1.GraphKeys.LOCAL_VARIABLES)
        kwargs["collections"] = list(colls)
        return getter(name, *args, **kwargs)
    with custom_getter_scope(to_local):
        yield


def _replica_optimizer(opt):
    """A shallow copy of a tf.compat.v1 optimizer with its own non-slot variables (created on first apply)."""
    clone = copy.copy(opt)
    if hasattr(opt, "_non_slot_dict"):
        clone._non_slot_dict = {}
    return clone


def _move_to_local(variables):
    g = tfv1.get_default_graph()
    global_vars = g.get_collection_ref(tfv1.GraphKeys.GLOBAL_VARIABLES)
    for v in variables:
        global_vars.remove(v)
        g.add_to_collection(tfv1.GraphKeys.LOCAL_VARIABLES, v)


def _sync_non_slot_ops(tower_opts):
    """Copy the main optimizer's non-slot variables into the replicas' (e.g. after a restore)."""
    main = getattr(tower_opts[0], "_non_slot_dict", {})
    ops = []
    for opt in tower_opts[1:]:
        for key, var in getattr(opt, "_non_slot_dict", {}).items():
            if key in main:
                ops.append(var.assign(main[key].read_value()).op)
    return ops


class _LeastLoadedDeviceSetter:
    """Device function: compute ops on the worker device, each variable on the ps device holding
    the fewest elements so far."""

    def __init__(self, worker_device, ps_devices, sizes):
        self.worker_device = worker_device
        self.ps_devices = ps_devices
        self.sizes = sizes          # shared between the towers

    def __call__(self, op):
        if op.device:
            return op.device
        if op.type not in _VARIABLE_OPS:
            return self.worker_device
        k = min(range(len(self.ps_devices)), key=lambda i: self.sizes[i])
        shape = op.get_attr("shape") if op.type == "VarHandleOp" else op.outputs[0].shape
        n = tf.TensorShape(shape).num_elements() or 0
        self.sizes[k] += n
        return self.ps_devices[k]


class _DataParallelTrainer(SingleCostTrainer):
    def __init__(self, gpus, devices=None):
        super().__init__()
        self.devices = _gpu_ids(gpus)
        self._raw_devices = _tower_devices(self.devices, devices)

    def _check_input(self, input):
        if len(self.devices) > 1 and not isinstance(input, FeedfreeInput):
            raise TypeError(f"{type(self).__name__} with {len(self.devices)} towers needs a feed-free input (each "
                            f"tower takes its own batch), e.g. QueueInput(dataflow); got {type(input).__name__}")

    def _build_towers(self, tower_fn, device_fns, use_vs):
        n = len(self.devices)
        ret = []
        for idx in range(n):
            name = f"tower{idx}"
            reuse = idx > 0 and not use_vs[idx]
            scope = tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True) if reuse else contextlib.nullcontext()
            with tfv1.device(device_fns[idx]), \
                    scope, TrainTowerContext(name, vs_name=name if use_vs[idx] else "", index=idx, total=n), \
                    _local_variables(use_vs[idx]):
                logger.info("Building graph for training tower %d on device %s ...", idx, self._raw_devices[idx])
                ret.append(tower_fn())
        return ret

    @staticmethod
    def _check_grad_list(grad_list):
        def base(v):
            return re.sub(r"^tower[0-9]+/", "", v.op.name)
        names = [[base(v) for _, v in grads] for grads in grad_list]
        if any(n != names[0] for n in names):
            raise ValueError("The towers computed gradients for different variables: "
                             f"{[sorted(set(n) ^ set(names[0])) for n in names]}")


class SyncMultiGPUTrainerParameterServer(_DataParallelTrainer):
    """Data-parallel training with shared variables: one tower per GPU, gradients averaged over the
    towers and applied once.

    Args:
        gpus: number of towers, or a list of GPU ids.
        ps_device: where variables live: ``'gpu'`` (spread over the tower devices; default for up
            to 2 towers) or ``'cpu'``.
        devices: (extension) explicit device per tower, e.g. ``['/cpu:0', '/cpu:1']``.
    """

    def __init__(self, gpus, ps_device=None, devices=None):
        super().__init__(gpus, devices)
        if ps_device is None:
            ps_device = "gpu" if len(self.devices) <= 2 else "cpu"
        if ps_device not in ("gpu", "cpu"):
            raise ValueError(f"ps_device must be 'gpu' or 'cpu', got {ps_device!r}")
        self.ps_device = ps_device

    def _setup_graph(self, input, get_cost_fn, get_opt_fn):
        self._check_input(input)
        ps = ["/cpu:0"] if self.ps_device == "cpu" else self._raw_devices
        sizes = [0] * len(ps)
        device_fns = [_LeastLoadedDeviceSetter(d, ps, sizes) for d in self._raw_devices]
        grad_list = self._build_towers(self._make_get_grad_fn(input, get_cost_fn, get_opt_fn), device_fns,
                                       [False] * len(self.devices))
        self._check_grad_list(grad_list)
        n = len(grad_list)
        averaged = []
        with tfv1.name_scope("AggregateGrads"):
            for pairs in zip(*grad_list, strict=True):
                v = pairs[0][1]
                with tfv1.device(v.device):
                    g = pairs[0][0] if n == 1 else tf.multiply(tf.add_n([p[0] for p in pairs]), 1.0 / n)
                averaged.append((g, v))
        opt = get_opt_fn()
        with tfv1.device("/cpu:0") if self.ps_device == "cpu" else contextlib.nullcontext():
            self.train_op = opt.apply_gradients(averaged, name="train_op")
        return []


def SyncMultiGPUTrainer(gpus):
    """A default multi-GPU trainer: :class:`SyncMultiGPUTrainerParameterServer` with variables on the CPU."""
    return SyncMultiGPUTrainerParameterServer(gpus, ps_device="cpu")


class SyncMultiGPUTrainerReplicated(_DataParallelTrainer):
    """Data-parallel training with a replica of the variables per tower (see the module docstring).

    Args:
        gpus: number of towers, or a list of GPU ids.
        average: average (default) or sum the gradients.
        mode: accepted for compatibility ('nccl', 'hierarchical', 'cpu', 'gpu', None); the
            gradients are always all-reduced with plain ``add_n`` ops (tensorpack's 'gpu' mode).
        devices: (extension) explicit device per tower.

    Attributes:
        BROADCAST_EVERY_EPOCH: re-copy tower 0's variables (including BatchNorm statistics, which
            only tower 0 updates) to the other towers after every epoch. Default True.
    """

    def __init__(self, gpus, average=True, mode=None, devices=None):
        super().__init__(gpus, devices)
        if mode is not None and str(mode).lower() not in ("nccl", "hierarchical", "cpu", "gpu", "collective"):
            raise ValueError(f"mode must be one of nccl/hierarchical/cpu/gpu/collective or None, got {mode!r}")
        self._average = bool(average)
        self.BROADCAST_EVERY_EPOCH = True

    def _setup_graph(self, input, get_cost_fn, get_opt_fn):
        self._check_input(input)
        n = len(self.devices)
        grad_list = self._build_towers(self._make_get_grad_fn(input, get_cost_fn, get_opt_fn), self._raw_devices,
                                       [False] + [True] * (n - 1))
        self._check_grad_list(grad_list)
        reduced = []
        with tfv1.name_scope("AllReduceGrads"):
            for k, pairs in enumerate(zip(*grad_list, strict=True)):
                with tfv1.device(self._raw_devices[k % n]):
                    g = tf.add_n([p[0] for p in pairs]) if n > 1 else pairs[0][0]
                    if self._average and n > 1:
                        g = tf.multiply(g, 1.0 / n)
                reduced.append(g)
        opt = get_opt_fn()
        ops, tower_opts = [], []
        with tfv1.name_scope("apply_gradients"):
            for idx, grads in enumerate(grad_list):
                # Each replica gets its own optimizer object, so optimizer state outside the slots
                # (Adam's beta1_power/beta2_power) exists once per replica and advances once per step.
                opt_k = opt if idx == 0 else _replica_optimizer(opt)
                before = set(tfv1.global_variables())
                with tfv1.device(self._raw_devices[idx]), _local_variables(idx > 0):
                    ops.append(opt_k.apply_gradients([(g, v) for g, (_, v) in zip(reduced, grads, strict=True)],
                                                     name=f"apply_grad_{idx}"))
                if idx > 0:     # state created outside get_variable (non-slot variables): keep it out of checkpoints
                    _move_to_local([v for v in tfv1.global_variables() if v not in before])
                tower_opts.append(opt_k)
        self.train_op = tf.group(*ops, name="train_op")
        if n == 1:
            return []
        with tfv1.name_scope("sync_variables"):
            sync = tf.group(self.get_post_init_ops(), *_sync_non_slot_ops(tower_opts),
                            name="sync_variables_and_optimizer_state")
        cb = RunOp(sync, run_before=True, run_as_trigger=self.BROADCAST_EVERY_EPOCH, verbose=True)
        cb.name_scope = "SyncVariables"
        return [cb]

    @staticmethod
    def get_post_init_ops():
        """An op copying every ``tower<k>/x`` variable (k > 0) from ``x``."""
        all_vars = tfv1.global_variables() + tfv1.local_variables()
        by_name = {v.op.name: v for v in all_vars}
        trainable = {v.op.name for v in tfv1.trainable_variables()}
        ops = []
        for v in all_vars:
            m = re.match(r"^tower([0-9]+)/(.*)$", v.op.name)
            if not m or m.group(1) == "0":
                continue
            src = by_name.get(m.group(2))
            if src is None:
                if v.op.name in trainable:
                    raise ValueError(f"[ReplicatedTrainer] trainable variable {v.op.name} has no main copy "
                                     f"{m.group(2)}")
                logger.warning("[ReplicatedTrainer] cannot sync %s (no %s); it stays per-tower", v.op.name,
                               m.group(2))
                continue
            ops.append(v.assign(src.read_value()).op)
        logger.info("'sync_variables_from_main_tower' includes %d operations.", len(ops))
        return tf.group(*ops, name="sync_variables_from_main_tower")

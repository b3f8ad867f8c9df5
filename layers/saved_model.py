"""Run a TF1-style SavedModel (what :func:`~layers.export_saved_model` writes) like a predictor.

``SavedModelPredictor(export_dir)`` loads the SavedModel into one graph and session per device and
calls one signature: its inputs are fed in the signature's key order (sorted), its outputs returned
in the order asked for. Inputs are checked as an :class:`~layers.OfflinePredictor` checks them
(count, dtype with numpy 'safe' casts and float narrowing, every fixed dimension).

>>> pred = SavedModelPredictor("export/sm")                  # doctest: +SKIP
>>> pred.input_names, pred.output_names                      # doctest: +SKIP
(['input'], ['fc0/output', 'fc1/output'])
>>> fc0, fc1 = pred(x)                                       # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import os

from ._compat import tf, tfv1
from .predict import PredictorReplica, _canonical_device, _Runner, variable_bytes

__all__ = ["SavedModelPredictor"]


def _check_dir(export_dir) -> str:
    export_dir = os.fspath(export_dir)
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(f"SavedModelPredictor: {export_dir!r} holds no saved_model.pb (a SavedModel "
                                "directory, as written by layers.export_saved_model, was expected)")
    return export_dir


def _signature(meta_graph, signature_name, where):
    sigs = meta_graph.signature_def
    if signature_name not in sigs:
        raise ValueError(f"SavedModelPredictor: {where} has no signature {signature_name!r}; "
                         f"signatures: {sorted(sigs)}")
    return sigs[signature_name]


class SavedModelPredictor:
    """Load a SavedModel once per device and call one of its signatures.

    Args:
        export_dir: the SavedModel directory (``saved_model.pb`` + ``variables/``).
        devices: device strings, one replica each; default None = ``['/cpu:0']``. Each replica
            is its own graph and session with the SavedModel's device placements cleared and
            every op pinned to its device.
        tags: the meta graph's tags; default ``('serve',)``.
        signature_name: default ``'serving_default'``.
        output_names: signature output keys to return, in order; default None = all, sorted.
        intra_op_threads, inter_op_threads: session thread pools; None (default) = 0, all cores.

    Attributes: ``replicas`` (one :class:`~layers.PredictorReplica` per device), ``devices``,
    ``input_specs`` (``tf.TensorSpec`` named by signature key), ``input_names``,
    ``output_names``. ``pred(*arrays)`` rotates over the replicas; ``close()`` closes every session.
    """

    def __init__(self, export_dir, *, devices=None, tags=("serve",), signature_name="serving_default",
                 output_names=None, intra_op_threads=None, inter_op_threads=None):
        export_dir = _check_dir(export_dir)
        self.devices = list(devices) if devices is not None else ["/cpu:0"]
        if isinstance(devices, str) or not self.devices:
            raise ValueError(f"SavedModelPredictor: devices must be a non-empty list of device strings, "
                             f"got {devices!r}")
        config = tfv1.ConfigProto(allow_soft_placement=True)
        config.gpu_options.allow_growth = True
        config.intra_op_parallelism_threads = intra_op_threads or 0
        config.inter_op_parallelism_threads = inter_op_threads or 0
        canon = [_canonical_device(d) for d in self.devices]
        if len(set(canon)) != len(canon):
            raise ValueError(f"SavedModelPredictor: devices must be distinct, got {self.devices}")
        n_cpus = max((int(c.split(":")[1]) + 1 for c in canon if c.startswith("CPU")), default=1)
        if n_cpus > 1:
            config.device_count["CPU"] = n_cpus   # logical CPU devices for '/cpu:1', ... (as MultiDevicePredictor)
        self._sessions = []
        self.replicas = []
        try:
            for i, dev in enumerate(self.devices):
                graph = tf.Graph()
                session = tfv1.Session(graph=graph, config=config)
                self._sessions.append(session)
                with graph.as_default(), tf.device(dev):
                    meta = tfv1.saved_model.loader.load(session, list(tags), export_dir, clear_devices=True)
                sig = _signature(meta, signature_name, repr(export_dir))
                in_keys = sorted(sig.inputs)
                out_keys = self._output_keys(sig, output_names)
                inputs = [graph.get_tensor_by_name(sig.inputs[k].name) for k in in_keys]
                outputs = [graph.get_tensor_by_name(sig.outputs[k].name) for k in out_keys]
                specs = [tf.TensorSpec(tf.TensorShape(sig.inputs[k].tensor_shape), tf.as_dtype(sig.inputs[k].dtype),
                                       k) for k in in_keys]
                runner = _Runner(session, inputs, outputs, specs, out_keys)
                graph.finalize()
                self.replicas.append(PredictorReplica(i, dev, "", runner, inputs, outputs))
        except BaseException:
            self.close()
            raise
        first = self.replicas[0]
        self.input_specs, self.input_names, self.output_names = first.input_specs, first.input_names, \
            first.output_names
        self._next = itertools.count()

    @staticmethod
    def _output_keys(sig, output_names):
        if output_names is None:
            return sorted(sig.outputs)
        if isinstance(output_names, str) or not output_names:
            raise ValueError(f"SavedModelPredictor: output_names must be a non-empty list of signature output "
                             f"keys, got {output_names!r}")
        unknown = [n for n in output_names if n not in sig.outputs]
        if unknown:
            raise ValueError(f"SavedModelPredictor: output(s) {unknown} are not in the signature; its outputs: "
                             f"{sorted(sig.outputs)}")
        return list(output_names)

    def __call__(self, *arrays):
        """Run on the next replica (round-robin; thread-safe)."""
        return self.replicas[next(self._next) % len(self.replicas)](*arrays)

    def predict_batch(self, feeds) -> dict:
        return self.replicas[next(self._next) % len(self.replicas)].predict_batch(feeds)

    def close(self):
        """Close every session (idempotent)."""
        for s in self._sessions:
            s.close()

    def variable_bytes(self) -> int:
        """Bytes held by the variables of every replica's graph (each replica loads its own copy)."""
        return variable_bytes([s.graph for s in self._sessions])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

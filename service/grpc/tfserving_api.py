"""TensorFlow Serving's gRPC API on the KServe gRPC server's port, so TF Serving's own clients
(``tensorflow-serving-api`` stubs) work unchanged:

* ``tensorflow.serving.PredictionService``: Predict (``TensorProto`` in and out), Classify
  (``tf.Example`` in, the label/score of every class out, best first) and GetModelMetadata
  (``metadata_field: ["signature_def"]``: a ``SignatureDefMap`` in an ``Any``); Regress and
  MultiInference are UNIMPLEMENTED;
* ``tensorflow.serving.ModelService``: GetModelStatus.

The semantics are the REST API's (:mod:`service.protocols.tfserving`): every model serves one signature,
``serving_default`` (``signature_name`` empty or that, else INVALID_ARGUMENT); ``model_spec.version``
or ``model_spec.version_label`` (one of the model config's ``version_labels``) pins the version (NOT_FOUND when
it is not loaded, or the label unknown); without either, the newest loaded version answers. Inputs are checked by :func:`service.validation.check_batch`, run by
:func:`service.inference.infer` (models are reached only through the manager interface), counted in
``tpserve_requests_total`` with routes ``grpc:tfserving:predict`` / ``grpc:tfserving:classify``, errors
mapped by :data:`service.grpc.server.GRPC_CODES`; the deadline is the call's gRPC deadline or
``TPSERVE_DEFAULT_TIMEOUT_MS``, the earlier.

The messages are this package's own (``service.grpc.tfserving``, a private descriptor pool): no TensorFlow
in the front-end processes. TensorProto <-> NumPy is done here: ``tensor_content`` (little-endian) or the
typed fields (``float_val``, ``double_val``, ``int_val``, ``int64_val``, ``bool_val``, ``half_val``,
``uint32_val``, ``uint64_val``; one value fills the shape, as TensorFlow reads it); outputs are sent as
``tensor_content``.
"""
from __future__ import annotations

import asyncio

import numpy as np

from ..errors import InvalidRequest, clip
from ..http import instrument
from ..images import image_row, run_image_work, stack_rows, top_k
from ..inference import infer
from ..protocols import kserve
from ..protocols import tfserving as rest
from ..validation import check_batch
from .server import answer, call_deadline
from .tfserving import apis_pb2 as pb
from .tfserving import apis_pb2_grpc as pb_grpc
from .tfserving import framework_pb2 as fw

__all__ = ["add_tfserving_servicers", "tensor_to_array", "array_to_tensor"]

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

# DataType -> (NumPy dtype, the typed repeated field that carries it)
_DTYPES = {
    fw.DT_FLOAT: (np.float32, "float_val"), fw.DT_DOUBLE: (np.float64, "double_val"),
    fw.DT_INT32: (np.int32, "int_val"), fw.DT_INT16: (np.int16, "int_val"), fw.DT_INT8: (np.int8, "int_val"),
    fw.DT_UINT8: (np.uint8, "int_val"), fw.DT_UINT16: (np.uint16, "int_val"),
    fw.DT_INT64: (np.int64, "int64_val"), fw.DT_BOOL: (np.bool_, "bool_val"),
    fw.DT_HALF: (np.float16, "half_val"), fw.DT_UINT32: (np.uint32, "uint32_val"),
    fw.DT_UINT64: (np.uint64, "uint64_val"),
}
_ENUMS = {np.dtype(t): e for e, (t, _) in _DTYPES.items()}
_TYPED = sorted({f for _, f in _DTYPES.values()})
_STATES = {"AVAILABLE": pb.ModelVersionStatus.AVAILABLE, "LOADING": pb.ModelVersionStatus.LOADING,
           "END": pb.ModelVersionStatus.END, "UNKNOWN": pb.ModelVersionStatus.UNKNOWN}


def _dtype_name(enum: int) -> str:
    return fw.DataType.Name(enum) if enum in fw.DataType.values() else str(enum)


def tensor_to_array(t, field: str, max_rows: int) -> np.ndarray:
    """A ``TensorProto`` -> a NumPy array (errors name ``field``); its size is bounded before allocation."""
    if t.dtype not in _DTYPES:
        raise InvalidRequest(f"{field}: unsupported dtype {_dtype_name(t.dtype)}", field=f"{field}.dtype",
                             expected=sorted(fw.DataType.Name(e) for e in _DTYPES), received=_dtype_name(t.dtype))
    if t.tensor_shape.unknown_rank:
        raise InvalidRequest(f"{field}: tensor_shape must be known", field=f"{field}.tensor_shape")
    shape = [d.size for d in t.tensor_shape.dim]
    count = kserve.declared_count(shape, f"{field}.tensor_shape", max_rows)
    dtype, where = _DTYPES[t.dtype]
    dtype = np.dtype(dtype)
    if t.tensor_content:
        if len(t.tensor_content) != count * dtype.itemsize:
            raise InvalidRequest(f"{field}: tensor_content holds {len(t.tensor_content)} bytes; shape {shape} of "
                                 f"{_dtype_name(t.dtype)} is {count * dtype.itemsize} bytes",
                                 field=f"{field}.tensor_content", expected=count * dtype.itemsize,
                                 received=len(t.tensor_content))
        arr = np.frombuffer(t.tensor_content, dtype=dtype.newbyteorder("<")).reshape(shape)
        if dtype == np.bool_ and arr.size and arr.view(np.uint8).max() > 1:
            raise InvalidRequest(f"{field}: DT_BOOL tensor_content must be bytes 0 or 1", field=f"{field}.tensor_content")
        return arr
    misplaced = [f for f in _TYPED if f != where and len(getattr(t, f))]
    if misplaced:
        raise InvalidRequest(f"{field}: {_dtype_name(t.dtype)} values go in {where}, not in {misplaced[0]}",
                             field=f"{field}.{misplaced[0]}", expected=where)
    values = getattr(t, where)
    n = len(values)
    if n != count and not (n == 1 and count > 1):      # one value fills the shape (tf.make_tensor_proto's form)
        raise InvalidRequest(f"{field}: {where} has {n} values, shape {shape} needs {count}", field=f"{field}.{where}",
                             expected=count, received=n)
    if where == "half_val":             # the float16 bit patterns, one per int32
        wide = np.array(values, dtype=np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 0xFFFF):
            raise InvalidRequest(f"{field}: half_val must hold 16-bit patterns", field=f"{field}.half_val")
        arr = wide.astype(np.uint16).view(np.float16)
    else:
        wide = np.array(values, dtype=np.float32 if dtype == np.float32 else None)
        if dtype.kind in "iu" and wide.size:
            info = np.iinfo(dtype)
            if wide.min() < info.min or wide.max() > info.max:
                raise InvalidRequest(f"{field}: {where} must hold integers in [{info.min}, {info.max}] for "
                                     f"{_dtype_name(t.dtype)}", field=f"{field}.{where}")
        arr = wide.astype(dtype, copy=False) if wide.size else np.zeros(0, dtype)
    return np.broadcast_to(arr, (count,)).reshape(shape) if n == 1 and count > 1 else arr.reshape(shape)


def array_to_tensor(a: np.ndarray, out=None):
    """A NumPy array -> a ``TensorProto`` (into ``out`` when given): dtype, shape and little-endian
    ``tensor_content``."""
    t = fw.TensorProto() if out is None else out
    a = np.asarray(a)
    enum = _ENUMS.get(a.dtype)
    if enum is None:
        raise TypeError(f"no TensorFlow dtype for {a.dtype}")
    t.dtype = enum
    for d in a.shape:
        t.tensor_shape.dim.add(size=d)
    t.tensor_content = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return t


def _name(spec) -> str:
    if not spec.name:
        raise InvalidRequest("'model_spec.name' is required (the model's name)", field="model_spec.name")
    return spec.name


def _version(spec) -> str | None:
    """The pinned version or label (None: the newest loaded version)."""
    kind = spec.WhichOneof("version_choice")
    if kind == "version_label":
        if not spec.version_label or spec.version_label.isdigit():
            raise InvalidRequest(f"model_spec.version_label {clip(spec.version_label, 40)!r} is not a label: "
                                 "pin a version number with model_spec.version", field="model_spec.version_label",
                                 received=clip(spec.version_label, 40))
        return spec.version_label
    return str(spec.version.value) if kind == "version" else None


def _signature(spec):
    if spec.signature_name not in rest._SIGNATURES:
        raise InvalidRequest(f"unknown signature_name {clip(spec.signature_name)!r}; this model serves "
                             f"{SIGNATURE!r}", field="model_spec.signature_name", expected=list(rest._SIGNATURES),
                             received=clip(spec.signature_name))


def _spec_out(spec_out, entry, served: str | None):
    spec_out.name = entry.name
    v = served if served is not None else entry.version
    if v is not None and str(v).isdigit():
        spec_out.version.value = int(v)
    spec_out.signature_name = SIGNATURE


def _dims(spec) -> list[int | None]:
    return list(spec.shape)


class _Base:
    def __init__(self, settings, manager, metrics):
        self.settings = settings
        self.manager = manager
        self.metrics = metrics

    def _entry(self, spec):
        """(entry, pinned version or label): READY, on the version the spec pins (if any), for inference."""
        name, version = _name(spec), _version(spec)
        return self.manager.get(name, version), version

    async def _run(self, route, request, context, make_inputs, respond):
        settings = self.settings
        with instrument(self.metrics, route) as obs:
            try:
                entry, version = self._entry(request.model_spec)
                obs.model = entry.name
                _signature(request.model_spec)
                model = entry.model
                arrays, fields, preprocessed = await make_inputs(model, request)
                arrays = check_batch(model.inputs, arrays, settings.max_rows_per_request, "inputs", fields,
                                     getattr(entry.config, "validate_range", True), preprocessed)
                check = getattr(respond, "check", None)
                if check is not None:
                    check(model, request)
                deadline = call_deadline(context, None, settings.default_timeout_ms)
                out, served = await infer(self.manager, entry, arrays, deadline, version)
                return respond(model, request, entry, out, served)
            except asyncio.CancelledError:
                remaining = context.time_remaining()
                obs.code = 504 if remaining is not None and remaining <= 0 else 499
                raise


class PredictionServicer(_Base, pb_grpc.PredictionServiceServicer):
    # ------------------------------------------------------------------ Predict
    async def Predict(self, request, context):
        return await answer(context, self._run, "grpc:tfserving:predict", request, context, self._tensors,
                            _predict_response)

    async def _tensors(self, model, request):
        max_rows = self.settings.max_rows_per_request
        if not request.inputs:
            raise InvalidRequest("'inputs' must name at least one tensor", field="inputs")
        specs = {s.name: s for s in model.inputs}
        arrays, fields = {}, {}
        for name, t in request.inputs.items():
            field = f"inputs[{clip(name, 60)!r}]"
            if name not in specs:
                raise InvalidRequest(f"{field}: unknown input {clip(name, 60)!r}; this model takes {sorted(specs)}",
                                     field="inputs", expected=sorted(specs), received=clip(name, 60))
            arr = tensor_to_array(t, field, max_rows)
            if arr.ndim and arr.shape[0] > max_rows:
                raise InvalidRequest(f"{field}: {arr.shape[0]} rows, limit is {max_rows}", field=f"{field}.tensor_shape")
            arrays[name], fields[name] = arr, field
        missing = sorted(set(specs) - set(arrays))
        if missing:
            raise InvalidRequest(f"missing input(s) {missing}", field="inputs", expected=sorted(specs))
        return arrays, fields, ()

    # ------------------------------------------------------------------ Classify
    async def Classify(self, request, context):
        return await answer(context, self._run, "grpc:tfserving:classify", request, context, self._examples,
                            _classify_response)

    async def _examples(self, model, request):
        """``tf.Example`` features named as the model's inputs: ``float_list``/``int64_list`` values (the
        input's shape, flattened) or, for an image model, a ``bytes_list`` of one encoded image."""
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise InvalidRequest("'input' must hold an example_list or example_list_with_context", field="input")
        holder = getattr(request.input, kind)
        examples = holder.examples
        context_features = holder.context.features.feature if kind == "example_list_with_context" else {}
        max_rows = self.settings.max_rows_per_request
        if not examples:
            raise InvalidRequest(f"input.{kind}.examples is empty", field=f"input.{kind}.examples")
        if len(examples) > max_rows:
            raise InvalidRequest(f"{len(examples)} examples, limit is {max_rows}", field=f"input.{kind}.examples")
        cols: dict[str, list] = {s.name: [] for s in model.inputs}
        images: dict[str, list] = {}
        for i, ex in enumerate(examples):
            features = ex.features.feature
            for s in model.inputs:
                field = f"input.{kind}.examples[{i}].features[{s.name!r}]"
                f = features[s.name] if s.name in features else context_features.get(s.name)
                which = f.WhichOneof("kind") if f is not None else None
                if which is None:
                    raise InvalidRequest(f"{field}: missing feature {s.name!r}", field=field,
                                         expected=[t.name for t in model.inputs])
                if which == "bytes_list":
                    if getattr(model, "preprocess_image", None) is None or len(f.bytes_list.value) != 1:
                        raise InvalidRequest(f"{field}: a bytes_list must hold one encoded image, for an image model",
                                             field=field)
                    images.setdefault(s.name, []).append((f.bytes_list.value[0], field))
                    continue
                values = getattr(f, which).value
                dims = _dims(s)
                if any(d is None for d in dims):
                    raise InvalidRequest(f"{field}: input {s.name!r} has a variable shape {dims}: send it to Predict",
                                         field=field)
                count = int(np.prod(dims, dtype=np.int64))
                if len(values) != count:
                    raise InvalidRequest(f"{field}: {len(values)} values, input {s.name!r} of shape {dims} needs "
                                         f"{count}", field=field, expected=count, received=len(values))
                cols[s.name].append(np.array(values, dtype=np.float32 if which == "float_list" else np.int64)
                                    .reshape(dims))
        arrays = {}
        for name, col in cols.items():
            if name in images:
                if col:
                    raise InvalidRequest(f"input {name!r}: either every example holds an image or none does",
                                         field=f"input.{kind}.examples")
                continue
            arrays[name] = np.stack(col)
        if images:
            settings = self.settings

            def decode():
                return {n: stack_rows([image_row(model, data, settings, field) for data, field in rows])
                        for n, rows in images.items()}
            arrays.update(await run_image_work(decode))
        return arrays, None, tuple(images)

    # ------------------------------------------------------------------ GetModelMetadata
    async def GetModelMetadata(self, request, context):
        async def metadata():
            name, version = _name(request.model_spec), _version(request.model_spec)
            fields = list(request.metadata_field)
            if not fields:
                raise InvalidRequest("metadata_field must name at least one field: 'signature_def'",
                                     field="metadata_field", expected=["signature_def"])
            unknown = [f for f in fields if f != "signature_def"]
            if unknown:
                raise InvalidRequest(f"metadata field {clip(unknown[0])!r} is not supported; supported: "
                                     "['signature_def']", field="metadata_field", expected=["signature_def"],
                                     received=clip(unknown[0]))
            meta = rest._metadata(self.manager, name, version)           # the REST answer, in protobuf
            sigmap = pb.SignatureDefMap()
            for sig_name, sig in meta["metadata"]["signature_def"]["signature_def"].items():
                out = sigmap.signature_def[sig_name]
                out.method_name = sig["method_name"]
                for key, target in (("inputs", out.inputs), ("outputs", out.outputs)):
                    for tname, info in sig[key].items():
                        ti = target[tname]
                        ti.name = info["name"]
                        ti.dtype = fw.DataType.Value(info["dtype"])
                        for d in info["tensor_shape"]["dim"]:
                            ti.tensor_shape.dim.add(size=int(d["size"]))
            resp = pb.GetModelMetadataResponse()
            _spec_out(resp.model_spec, self.manager.find(name, version), None)
            resp.metadata["signature_def"].Pack(sigmap)
            return resp
        return await answer(context, metadata)


class ModelServicer(_Base, pb_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request, context):
        async def status():
            spec = request.model_spec
            resp = pb.GetModelStatusResponse()
            for s in rest._status(self.manager, _name(spec), _version(spec))["model_version_status"]:
                v = resp.model_version_status.add(version=int(s["version"]) if s["version"].isdigit() else 0,
                                                  state=_STATES.get(s["state"], pb.ModelVersionStatus.UNKNOWN))
                v.status.error_code = 0 if s["status"]["error_code"] == "OK" else 14  # tensorflow.error.UNAVAILABLE
                v.status.error_message = s["status"]["error_message"]
            return resp
        return await answer(context, status)


def _predict_response(model, request, entry, out, served):
    names = [s.name for s in model.outputs]
    wanted = list(request.output_filter) or names
    resp = pb.PredictResponse()
    _spec_out(resp.model_spec, entry, served)
    for name in wanted:
        array_to_tensor(out[name], resp.outputs[name])
    return resp


def _check_filter(model, request):
    names = [s.name for s in model.outputs]
    for i, name in enumerate(request.output_filter):
        if name not in names:
            raise InvalidRequest(f"output_filter[{i}]: unknown output {clip(name)!r}; this model has {names}",
                                 field=f"output_filter[{i}]", expected=names, received=clip(name))
    if len(set(request.output_filter)) != len(request.output_filter):
        raise InvalidRequest("output_filter names an output twice", field="output_filter")


_predict_response.check = _check_filter


def _classify_response(model, request, entry, out, served):
    scores = out["prob"] if "prob" in out else next(iter(out.values()))
    resp = pb.ClassificationResponse()
    _spec_out(resp.model_spec, entry, served)
    for row in top_k(scores, model.labels, scores.shape[1]):
        c = resp.result.classifications.add()
        for r in row:
            c.classes.add(label=r["label"], score=r["score"])
    return resp


def _check_scores(model, request):
    specs = {s.name: s for s in model.outputs}
    s = specs.get("prob") or model.outputs[0]
    if len(s.shape) != 1 or np.dtype(s.dtype).kind not in "iuf":
        raise InvalidRequest(f"Classify needs a numeric output of one score per class; {s.name!r} has shape "
                             f"{list(s.shape)} per row", field="model_spec.name")


_classify_response.check = _check_scores


def add_tfserving_servicers(server, settings, manager, metrics) -> None:
    """Serve ``tensorflow.serving.PredictionService`` and ``ModelService`` on ``server``."""
    pb_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(settings, manager, metrics), server)
    pb_grpc.add_ModelServiceServicer_to_server(ModelServicer(settings, manager, metrics), server)

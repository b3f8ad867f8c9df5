"""Serve a model that is not in the zoo: the user's own ``ModelDesc``, named by import path, or a
SavedModel written by :func:`layers.export_saved_model`.

A model repository entry (``config.json``) selects this with its ``architecture``:

* ``"architecture": "my_package.my_module:Model"`` imports ``my_package.my_module`` and takes its
  attribute ``Model`` (a :class:`layers.ModelDesc` subclass, tensorpack style: ``inputs()`` and
  ``build_graph(*inputs)``), calls ``Model(**options)``, builds it under
  ``TowerContext('', is_training=False)`` and serves ``outputs`` (required). The version directory
  holds its weights (``.npz`` from ``dump_model_params`` or a TF checkpoint from ``ModelSaver``),
  restored strictly.
* ``"architecture": "saved_model"``: the version directory is a SavedModel (``saved_model.pb`` +
  ``variables/``); its signature's inputs and outputs are served.

Other keys (all optional unless said):

==================  ==================================================================================
``options``         keyword arguments for the ModelDesc's constructor (``{}``)
``outputs``         tensors to serve: a list of tensor names (``["prob", "fc1/output"]``; ``name`` and
                    ``name:0`` both work; the served name drops ``:0``) or a mapping served name ->
                    tensor name (``{"logits": "fc1/output"}``). Required for a ModelDesc; for a
                    SavedModel, signature output keys (default: all of them)
``inputs``          the inputs clients feed, a subset of ``inputs()`` names; default: those the
                    outputs depend on (a training-only ``label`` input is left out by itself).
                    A SavedModel always takes every signature input
``labels``          class names, index -> name, for ``:classify`` and image uploads
``value_ranges``    ``{input name: [low, high]}``: the values the model was trained on (the server
                    refuses requests outside them unless the config sets ``validate_range: false``;
                    and the scale image uploads are mapped to)
``image``           ``"RGB"``, ``"BGR"`` or ``"gray"``: accept image uploads for the single input of
                    shape ``[H, W]``/``[H, W, 1]`` (gray) or ``[H, W, 3]``: resized to ``H x W``, colour
                    converted, 0-255 mapped to the input's value range (0-255 without one)
``python_path``     a directory *inside the model repository*, appended to ``sys.path`` before the
                    import (a package shipped with the repository); default: the module must be
                    importable by the server's Python already
``signature``       SavedModel only: the signature to serve (``"serving_default"``)
==================  ==================================================================================

Importing a module runs its code with the server's rights: ``architecture`` is trusted
configuration, like an ``import`` line in the server itself. Every problem found here (module
not importable, attribute missing, not a ModelDesc, bad options, an output that is not in the
graph, a malformed key) is a :class:`UserModelError` (a ``ValueError``) whose message says what
was wrong and what was expected; weights that do not match fail later, in the strict restore,
with ``SmartInit``'s report.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from layers import ModelDescBase, SavedModelPredictor, TowerContext

from . import preprocess as P
from .spec import InputSpec, OutputSpec, ZooModel

__all__ = ["SAVED_MODEL", "CONFIG_KEYS", "UserModelError", "UserModelConfig", "is_user_architecture",
           "parse_config", "resolve_class", "build", "load_saved_model"]

#: ``architecture`` value of a SavedModel entry.
SAVED_MODEL = "saved_model"
#: config keys of user entries, besides the general ``architecture``/``options``/``batching``/``description``.
CONFIG_KEYS = ("outputs", "inputs", "labels", "value_ranges", "image", "python_path", "signature")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
_IMAGE_ORDERS = ("RGB", "BGR", "gray")


class UserModelError(ValueError):
    """A user model entry that cannot be served; the message says why and what was expected."""


def is_user_architecture(architecture) -> bool:
    """True for ``"saved_model"`` and for an import spec ``"module:attribute"``."""
    return isinstance(architecture, str) and (architecture == SAVED_MODEL or ":" in architecture)


@dataclasses.dataclass(frozen=True)
class UserModelConfig:
    """The parsed keys of a user entry (see the module docstring for each key).

    Attributes:
        architecture: ``"module:attribute"`` or ``"saved_model"``.
        kwargs: the entry's ``options`` (constructor keyword arguments).
        outputs: ``((served name, tensor name or signature key), ...)``; None = every signature
            output (SavedModel only).
        inputs: served input names; None = the inputs the outputs depend on.
        labels: class names, or ``()``.
        value_ranges: ``{input: (low, high)}``.
        image: ``'RGB'``, ``'BGR'``, ``'gray'`` or None (no image uploads).
        python_path: absolute directory appended to ``sys.path``, or None.
        signature: SavedModel signature key.
    """

    architecture: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    outputs: tuple[tuple[str, str], ...] | None = None
    inputs: tuple[str, ...] | None = None
    labels: tuple[str, ...] = ()
    value_ranges: dict = dataclasses.field(default_factory=dict)
    image: str | None = None
    python_path: str | None = None
    signature: str = "serving_default"

    def options(self) -> dict[str, Any]:
        """The constructor options (what ``ZooModel.options`` reports)."""
        return dict(self.kwargs)


def _str_list(value, key, where) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list) or not value or \
            not all(isinstance(v, str) and v for v in value):
        raise UserModelError(f"{where}: {key!r} must be a non-empty list of names (strings), got {value!r}")
    if len(set(value)) != len(value):
        raise UserModelError(f"{where}: {key!r} lists a name twice: {value}")
    return tuple(value)


def _parse_outputs(value, where) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        if not value or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
            raise UserModelError(f"{where}: 'outputs' as a mapping must map served names to tensor names "
                                 f"(non-empty strings), got {value!r}")
        return tuple(value.items())
    names = _str_list(value, "outputs", where)
    pairs = tuple((n[:-2] if n.endswith(":0") else n, n) for n in names)
    served = [p[0] for p in pairs]
    if len(set(served)) != len(served):
        raise UserModelError(f"{where}: 'outputs' names the same tensor twice: {list(names)}")
    return pairs


def _parse_ranges(value, where) -> dict:
    if not isinstance(value, Mapping):
        raise UserModelError(f"{where}: 'value_ranges' must map input names to [low, high], got {value!r}")
    out = {}
    for name, r in value.items():
        ok = isinstance(r, list) and len(r) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) and r[0] < r[1]
        if not ok:
            raise UserModelError(f"{where}: value_ranges[{name!r}] must be [low, high] with low < high, got {r!r}")
        out[name] = (float(r[0]), float(r[1]))
    return out


def _parse_python_path(value, root: Path, where) -> str:
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        raise UserModelError(f"{where}: 'python_path' must be a directory relative to the model repository, "
                             f"got {value!r}")
    base = root.resolve()
    path = (base / value).resolve()
    if not path.is_relative_to(base):
        raise UserModelError(f"{where}: 'python_path' {value!r} leaves the model repository; it must name a "
                             "directory inside it")
    if not path.is_dir():
        raise UserModelError(f"{where}: 'python_path' {value!r} is not a directory of the model repository")
    return str(path)


def parse_config(raw: Mapping, root: Path, where: str) -> UserModelConfig:
    """Check a user entry's keys (nothing is imported yet). ``root`` is the model repository (for
    ``python_path``), ``where`` names the config file in messages.

    Raises:
        UserModelError: a malformed key; the message names it, the expected form and the value.
    """
    arch = raw.get("architecture")
    saved = arch == SAVED_MODEL
    if not saved and not (isinstance(arch, str) and _SPEC_RE.match(arch)):
        raise UserModelError(f"{where}: architecture {arch!r} is not an import spec: expected "
                             "'package.module:ClassName' (or 'saved_model')")
    options = raw.get("options") or {}
    if saved and options:
        raise UserModelError(f"{where}: a saved_model entry takes no 'options' (got {sorted(options)}); the graph "
                             "is in the SavedModel")
    for key in ("python_path", "inputs") if saved else ("signature",):
        if key in raw:
            raise UserModelError(f"{where}: {key!r} does not apply to architecture {arch!r}")
    if not saved and "outputs" not in raw:
        raise UserModelError(f"{where}: a ModelDesc entry needs 'outputs': the tensor names to serve, e.g. "
                             "[\"prob\"]")
    image = raw.get("image")
    if image is not None and image not in _IMAGE_ORDERS:
        raise UserModelError(f"{where}: 'image' must be one of {list(_IMAGE_ORDERS)}, got {image!r}")
    signature = raw.get("signature", "serving_default")
    if not isinstance(signature, str) or not signature:
        raise UserModelError(f"{where}: 'signature' must be a non-empty string, got {signature!r}")
    labels = raw.get("labels")
    return UserModelConfig(
        architecture=arch, kwargs=dict(options),
        outputs=_parse_outputs(raw["outputs"], where) if "outputs" in raw else None,
        inputs=_str_list(raw["inputs"], "inputs", where) if "inputs" in raw else None,
        labels=_str_list(labels, "labels", where) if labels is not None else (),
        value_ranges=_parse_ranges(raw.get("value_ranges") or {}, where),
        image=image,
        python_path=_parse_python_path(raw["python_path"], root, where) if "python_path" in raw else None,
        signature=signature)


# ------------------------------------------------------------------------------------------------
def resolve_class(cfg: UserModelConfig) -> type:
    """Import ``cfg.architecture`` and return the ModelDesc class it names.

    Raises:
        UserModelError: the module cannot be imported (or raised while importing), the attribute is
            missing, or it is not a ``layers.ModelDesc`` subclass.
    """
    spec = cfg.architecture
    module_name, _, attr = spec.partition(":")
    if cfg.python_path is not None and cfg.python_path not in sys.path:
        sys.path.append(cfg.python_path)   # appended: it never shadows the server's own packages
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            where = "the server's Python path" + (" and python_path" if cfg.python_path else "")
            raise UserModelError(f"architecture {spec!r}: module {module_name!r} is not importable ({e}); it must be "
                                 f"on {where}: install the package in the server's environment, or ship it in "
                                 "the repository and set \"python_path\"") from None
        raise UserModelError(f"architecture {spec!r}: importing {module_name!r} failed: ModuleNotFoundError: {e}") \
            from None
    except Exception as e:  # noqa: BLE001 - any error of the user's module code is reported, not raised through
        raise UserModelError(f"architecture {spec!r}: importing {module_name!r} raised {type(e).__name__}: {e}") \
            from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(n for n, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, ModelDescBase) and v.__module__ == module.__name__)
            raise UserModelError(f"architecture {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                                 f"ModelDesc classes it defines: {found or 'none'}")
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, ModelDescBase)):
        raise UserModelError(f"architecture {spec!r} names a {type(obj).__name__}, not a layers.ModelDesc "
                             "subclass (a class with inputs() and build_graph())")
    return obj


def _near_names(graph, name: str) -> str:
    ops = [op.name for op in graph.get_operations() if op.type != "Const"]
    base = name.split(":")[0]
    near = difflib.get_close_matches(base, ops, n=5, cutoff=0.5)
    near += [o for o in ops if o.endswith("/" + base.rsplit("/", 1)[-1]) and o not in near][:5 - len(near)]
    return f"similar names: {near}" if near else f"no similar name among its {len(ops)} ops"


def _find_tensor(graph, served, tensor, spec):
    full = tensor if ":" in tensor else tensor + ":0"
    try:
        t = graph.get_tensor_by_name(full)
    except (KeyError, ValueError):
        raise UserModelError(f"architecture {spec!r}: output {served!r} = {tensor!r} is not a tensor of the graph "
                             f"build_graph() made; {_near_names(graph, tensor)}") from None
    if t.shape.rank == 0:
        raise UserModelError(f"architecture {spec!r}: output {tensor!r} is a scalar; a served output needs a "
                             "batch dimension (one row per input row)")
    return full, t


def _placeholders_used(outputs) -> set[str]:
    """Names of the Placeholder ops the output tensors depend on."""
    seen, stack, used = set(), [t.op for t in outputs], set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type == "Placeholder":
            used.add(op.name)
        stack.extend(i.op for i in op.inputs)
        stack.extend(op.control_inputs)
    return used


def _instantiate(cls, cfg):
    spec = cfg.architecture
    try:
        model = cls(**cfg.kwargs)
    except Exception as e:  # noqa: BLE001 - bad options are the user's error: report them
        raise UserModelError(f"architecture {spec!r}: {cls.__name__}(**options) with options {cfg.kwargs} raised "
                             f"{type(e).__name__}: {e}") from None
    try:
        signature = model.get_input_signature()
    except Exception as e:  # noqa: BLE001
        raise UserModelError(f"architecture {spec!r}: {cls.__name__}.inputs() failed: {type(e).__name__}: {e}") \
            from None
    return model, signature


def _serving_inputs(cfg, signature, used) -> list:
    spec = cfg.architecture
    by_name = {s.name: s for s in signature}
    if cfg.inputs is None:
        chosen = [s for s in signature if s.name in used]
        if not chosen:
            raise UserModelError(f"architecture {spec!r}: the outputs depend on none of the inputs {list(by_name)}")
    else:
        unknown = [n for n in cfg.inputs if n not in by_name]
        if unknown:
            raise UserModelError(f"architecture {spec!r}: 'inputs' names {unknown}, not inputs of the model; its "
                                 f"inputs(): {list(by_name)}")
        needed = [n for n in by_name if n in used and n not in cfg.inputs]
        if needed:
            raise UserModelError(f"architecture {spec!r}: the outputs also depend on input(s) {needed}, which "
                                 "'inputs' leaves out")
        chosen = [by_name[n] for n in cfg.inputs]
    for s in chosen:
        dims = None if s.shape.rank is None else s.shape.as_list()
        if not dims or dims[0] is not None:
            raise UserModelError(f"architecture {spec!r}: input {s.name!r} has shape {dims}; a served input needs "
                                 "a known rank and a first (batch) dimension of None")
        if not (s.dtype.is_floating or s.dtype.is_integer or s.dtype.is_bool):
            raise UserModelError(f"architecture {spec!r}: input {s.name!r} has dtype {s.dtype.name}; only numeric "
                                 "and bool inputs can be served")
    return chosen


def _input_specs(cfg, specs) -> tuple[InputSpec, ...]:
    """``specs``: ``tf.TensorSpec`` of the served inputs, batch dimension first."""
    names = [s.name for s in specs]
    stray = [n for n in cfg.value_ranges if n not in names]
    if stray:
        raise UserModelError(f"{cfg.architecture!r}: 'value_ranges' names {stray}, not served inputs {names}")
    return tuple(InputSpec(s.name, np.dtype(s.dtype.as_numpy_dtype).name, tuple(s.shape.as_list()[1:]),
                           cfg.value_ranges.get(s.name, ()), cfg.image or "") for s in specs)


def _image_preprocess(cfg, inputs: tuple[InputSpec, ...]) -> Callable | None:
    """The upload transform for ``cfg.image``: resize, colour, scale (see the module docstring)."""
    if cfg.image is None:
        return None
    where = f"{cfg.architecture!r}: 'image'"
    if len(inputs) != 1:
        raise UserModelError(f"{where} needs exactly one served input, the model has {[i.name for i in inputs]}")
    spec = inputs[0]
    shape = spec.shape
    channels = 3 if cfg.image != "gray" else 1
    ok = len(shape) in (2, 3) and None not in shape[:2] and (
        (len(shape) == 2 and channels == 1) or (len(shape) == 3 and shape[2] == channels))
    if not ok:
        want = "[H, W] or [H, W, 1]" if channels == 1 else "[H, W, 3]"
        raise UserModelError(f"{where} {cfg.image!r} needs input {spec.name!r} of shape {want} (H, W fixed), "
                             f"got {list(shape)}")
    low, high = spec.value_range or (0.0, 255.0)
    dtype = np.dtype(spec.dtype)

    def preprocess(rgb: np.ndarray) -> np.ndarray:
        img = P.rgb_to_gray(rgb) if channels == 1 else np.asarray(rgb, np.float32)
        if cfg.image == "BGR":
            img = img[:, :, ::-1]
        img = P.fit_size(img, shape[:2]).reshape(shape)                  # (H, W[, C]) 0-255
        img = low + img * ((high - low) / 255.0)
        if dtype.kind in "iu":
            img = np.clip(np.rint(img), np.iinfo(dtype).min, np.iinfo(dtype).max)
        return img.astype(dtype)

    return preprocess


def _check_labels(cfg, outputs, served_shapes):
    if not cfg.labels:
        return
    names = [o.name for o in outputs]
    target = "prob" if "prob" in names else names[0]
    width = served_shapes[target][-1] if served_shapes[target] else None
    if width is not None and width != len(cfg.labels):
        raise UserModelError(f"{cfg.architecture!r}: {len(cfg.labels)} labels, but output {target!r} has {width} "
                             "columns")


def build(cfg: UserModelConfig) -> ZooModel:
    """Import, instantiate and inspect a user ModelDesc (built once in a scratch graph under
    ``TowerContext('', is_training=False)``); returns a :class:`~model_zoo.ZooModel` whose
    ``outputs`` hold the resolved tensor names. No weights are read.

    Raises:
        UserModelError: see the module docstring.
    """
    if cfg.architecture == SAVED_MODEL:
        raise UserModelError("build: a saved_model entry has no ModelDesc; use load_saved_model")
    cls = resolve_class(cfg)
    model, signature = _instantiate(cls, cfg)
    with tf.Graph().as_default() as graph:
        placeholders = model.create_placeholders()
        try:
            with TowerContext("", is_training=False):
                model.build_graph(*placeholders)
        except Exception as e:  # noqa: BLE001 - the user's graph code: report, don't crash the loader
            raise UserModelError(f"architecture {cfg.architecture!r}: build_graph() in an inference tower raised "
                                 f"{type(e).__name__}: {e}") from None
        resolved = [(served, *_find_tensor(graph, served, tensor, cfg.architecture)) for served, tensor in cfg.outputs]
        used = _placeholders_used([t for _, _, t in resolved])
    outputs = tuple(OutputSpec(served, full) for served, full, _ in resolved)
    _check_labels(cfg, outputs, {s: (t.shape.as_list()[1:] if t.shape.rank else None) for s, _, t in resolved})
    inputs = _input_specs(cfg, _serving_inputs(cfg, signature, used))
    pre = _image_preprocess(cfg, inputs)
    return ZooModel(architecture=cfg.architecture, config=cfg, model=model, inputs=inputs, outputs=outputs,
                    labels=cfg.labels, preprocessing=_describe_image(cfg), _preprocess=pre)


def _describe_image(cfg) -> str:
    if cfg.image is None:
        return "none: this model takes no image uploads"
    colour = "grayscale (BT.601 luma)" if cfg.image == "gray" else cfg.image
    return f"{colour}, resized to the input's height and width, 0-255 mapped to the input's value range"


def load_saved_model(cfg: UserModelConfig, export_dir, devices, intra_op_threads=None,
                     inter_op_threads=None) -> tuple[ZooModel, SavedModelPredictor]:
    """Load a SavedModel version (one replica per device) and describe it.

    Returns:
        ``(zoo, predictor)``: ``zoo.model`` is None; ``zoo.outputs`` map served names to
        signature output keys; ``predictor`` returns them in that order.

    Raises:
        UserModelError: unknown signature or output key, bad ``inputs``/``value_ranges``/``image``.
    """
    keys = None if cfg.outputs is None else [tensor for _, tensor in cfg.outputs]
    try:
        pred = SavedModelPredictor(export_dir, devices=devices, signature_name=cfg.signature, output_names=keys,
                                   intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads)
    except ValueError as e:
        raise UserModelError(str(e)) from None
    try:
        served = cfg.outputs or tuple((k, k) for k in pred.output_names)
        inputs = _input_specs(cfg, _serving_inputs(cfg, pred.input_specs, {s.name for s in pred.input_specs}))
        zoo = ZooModel(architecture=SAVED_MODEL, config=cfg, model=None, inputs=inputs,
                       outputs=tuple(OutputSpec(s, k) for s, k in served), labels=cfg.labels,
                       preprocessing=_describe_image(cfg), _preprocess=_image_preprocess(cfg, inputs))
    except BaseException:
        pred.close()
        raise
    return zoo, pred

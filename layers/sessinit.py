"""Checkpoints: read and write variable files, and restore them into a graph (``SmartInit``).

Two file formats, both keyed by variable name:

* ``.npz`` (what tensorpack's ``dump-model-params.py`` and model zoo write): keys are tensor names
  with or without ``:0``. Read with ``allow_pickle=False`` and array headers checked first, so no
  code path ever unpickles; pickled ``.npy`` dicts (tensorpack's old format) are refused with a
  conversion recipe.
* TensorFlow checkpoints written by ``tf.compat.v1.train.Saver`` (tensorpack's ``ModelSaver``):
  keys are op names (no ``:0``). Accepted as the ``model-N`` prefix, its ``.index`` or
  ``.data-*`` file, the ``checkpoint`` state file, or the directory holding it (newest model).

Restoring matches the graph's GLOBAL_VARIABLES to the file by name (``:0`` ignored), checks every
shape and dtype before touching the session, and then loads all values in one ``Session.run`` by
feeding each variable's initializer (no new ops, so it also works on a finalized graph). A file is
recognised by its extension, or by content (zip -> ``.npz``; ``.npy`` magic -> refused).

Differences from tensorpack (improvements): a directory is accepted as a checkpoint path; all
shape/dtype mismatches are reported in one error; TF checkpoints with mismatches are handled like
dicts (no separate "relaxed" saver); ``.npy`` files are refused instead of unpickled; every
restore returns a :class:`RestoreReport`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import zipfile
import zlib

import numpy as np

from ._compat import tf, tfv1

__all__ = [
    "SessionInit", "JustCurrentSession", "DictRestore", "SaverRestore", "ChainInit", "SmartInit",
    "get_model_loader", "RestoreReport", "ModelFile", "open_model_file", "get_checkpoint_path",
    "load_checkpoint_vars", "save_checkpoint_vars", "dump_model_params", "is_training_name",
]

logger = logging.getLogger(__name__)

_CKPT_SUFFIX = re.compile(r"\.(index|data-\d{5}-of-\d{5})$")
#: Keys TF adds to object-based checkpoints; never a variable.
_CKPT_INTERNAL_KEYS = frozenset({"_CHECKPOINTABLE_OBJECT_GRAPH"})
_TRAINING_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/Adadelta", "/Adadelta_1", "/RMSProp", "/RMSProp_1",
                      "/Adagrad", "/Ftrl", "/Ftrl_1", "/AccumGrad")
_TRAINING_NAMES = frozenset({"global_step", "beta1_power", "beta2_power", "learning_rate"})


def _npy_conversion_hint(path) -> str:
    out = os.path.splitext(str(path))[0] + ".npz"
    return (f"Convert it once, in a Python you trust with this file: `d = np.load({str(path)!r}, allow_pickle=True, "
            f"encoding='latin1').item(); np.savez({out!r}, **{{k: np.asarray(v) for k, v in d.items()}})` "
            "and load the .npz (plain numeric arrays only)")


def op_name(name: str) -> str:
    """``'conv0/W:0'`` -> ``'conv0/W'``; a name without ``:k`` is returned as is."""
    base, sep, idx = name.rpartition(":")
    if not sep or not idx.isdigit():
        return name
    if idx != "0":
        raise ValueError(f"{name!r} names output {idx} of op {base!r}; variables are output 0 (':0')")
    return base


def is_training_name(name: str) -> bool:
    """True for training-only state: optimizer slots (``/Adam``, ``/Momentum``, ...), ``global_step``,
    Adam's beta powers, ``EMA/`` summaries, gradient accumulators (tensorpack's ``is_training_name``
    plus ``global_step``/``learning_rate``). Such variables are never "missing" from an inference file."""
    name = op_name(name)
    if name.endswith(_TRAINING_SUFFIXES) or name in _TRAINING_NAMES:
        return True
    return (name.startswith(("EMA/", "AccumGrad", "apply_gradients")) or "/EMA/" in name)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
class ModelFile:
    """A set of named arrays: ``.describe()`` gives ``{op_name: (shape, numpy dtype)}`` without
    loading values, ``.read(names)`` loads some of them. Names never carry ``:0``."""

    path: str = "<dict>"

    def describe(self) -> dict:
        raise NotImplementedError

    def read(self, names) -> dict:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r})"


def _keys_to_op_names(keys, where) -> dict:
    """{op_name: original key}; two keys naming the same variable ('a' and 'a:0') are an error."""
    out = {}
    for k in keys:
        name = op_name(k)
        if name in out:
            raise ValueError(f"{where}: keys {out[name]!r} and {k!r} name the same variable")
        out[name] = k
    return out


class _DictFile(ModelFile):
    def __init__(self, dic, where="dict"):
        if not isinstance(dic, dict):
            raise TypeError(f"DictRestore: expected a dict of name -> array, got {type(dic).__name__}")
        self.path = where
        bad = [k for k in dic if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: keys must be variable names (str), got {bad!r}")
        self._keys = _keys_to_op_names(dic, where)
        self._arrays = {}
        for name, key in self._keys.items():
            try:
                arr = np.asarray(dic[key])
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: value of {key!r} is not a numeric array: {e}") from None
            if arr.dtype.hasobject:
                raise ValueError(f"{where}: value of {key!r} is an object array ({type(dic[key]).__name__}); "
                                 "expected a numeric numpy array")
            self._arrays[name] = arr

    def describe(self):
        return {k: (tuple(a.shape), a.dtype) for k, a in self._arrays.items()}

    def read(self, names):
        return {k: self._arrays[k] for k in names}


class _NpzFile(ModelFile):
    """An .npz read without pickle: headers are parsed first, object arrays refused up front."""

    def __init__(self, path):
        self.path = path
        described, keys = {}, []
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        raise ValueError(f"{path}: member {info.filename!r} is not a .npy array; not an .npz "
                                         "of variables")
                    key = info.filename[:-4]
                    with zf.open(info) as fh:
                        shape, dtype = self._header(fh, key)
                    keys.append(key)
                    described[key] = (tuple(shape), dtype)
        except FileNotFoundError:
            raise FileNotFoundError(f"No such .npz file: {path!r}") from None
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt?): {e}") from None
        self._keys = _keys_to_op_names(keys, path)
        self._described = {name: described[key] for name, key in self._keys.items()}

    def _header(self, fh, key):
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise ValueError(f"{self.path}: array {key!r} has an unreadable header: {e}") from None
        if dtype.hasobject:
            raise ValueError(f"{self.path}: array {key!r} is an object array, which only pickle can load; "
                             "refusing to unpickle. Re-save the file with plain numeric arrays "
                             "(np.savez(path, **{name: np.asarray(value, np.float32)}))")
        return shape, dtype

    def describe(self):
        return dict(self._described)

    def read(self, names):
        out = {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                for name in names:
                    out[name] = z[self._keys[name]]
        except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as e:
            raise ValueError(f"{self.path}: cannot read arrays (truncated or corrupt?): {e}") from None
        return out


class _CheckpointFile(ModelFile):
    def __init__(self, path):
        self.path = get_checkpoint_path(path)
        try:
            self._reader = tf.train.load_checkpoint(self.path)
            shapes = self._reader.get_variable_to_shape_map()
            dtypes = self._reader.get_variable_to_dtype_map()
        except Exception as e:  # noqa: BLE001 - the C++ reader raises OpError, IndexError, RuntimeError ...
            raise ValueError(f"{self.path}: not a readable TensorFlow checkpoint (truncated or corrupt?): "
                             f"{_first_line(e)}") from None
        self._described = {}
        for k, shape in shapes.items():
            if k in _CKPT_INTERNAL_KEYS:
                continue
            dt = dtypes[k]
            npdt = np.dtype(object) if dt == tf.string else np.dtype(dt.as_numpy_dtype)
            self._described[k] = (tuple(shape), npdt)

    def describe(self):
        return dict(self._described)

    def read(self, names):
        out = {}
        for name in names:
            try:
                out[name] = np.asarray(self._reader.get_tensor(name))
            except Exception as e:  # noqa: BLE001 - see __init__
                raise ValueError(f"{self.path}: cannot read {name!r} (truncated or corrupt data file?): "
                                 f"{_first_line(e)}") from None
        return out


def _first_line(e) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


def get_checkpoint_path(path) -> str:
    """Resolve a TF checkpoint path to its ``model-N`` prefix.

    Accepts the prefix itself, its ``.index`` or ``.data-XXXXX-of-YYYYY`` file, a ``checkpoint``
    state file, or a directory holding one (both resolve to the newest checkpoint it lists).

    Raises:
        FileNotFoundError: nothing usable at ``path``.
    """
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path) or os.path.basename(path) == "checkpoint":
        d = path if os.path.isdir(path) else (os.path.dirname(path) or ".")
        state = os.path.join(d, "checkpoint")
        if not os.path.isfile(state):
            raise FileNotFoundError(f"{path!r}: no 'checkpoint' state file in {d!r}; pass the model-N prefix")
        latest = tf.train.latest_checkpoint(d)
        if latest is None:
            raise FileNotFoundError(f"{state!r} does not name an existing checkpoint (or is unreadable)")
        return latest
    prefix = _CKPT_SUFFIX.sub("", path)
    if os.path.isfile(prefix + ".index"):
        return prefix
    raise FileNotFoundError(f"No TensorFlow checkpoint at {path!r} (looked for {prefix + '.index'!r})")


def open_model_file(path) -> ModelFile:
    """Open ``.npz`` or TF checkpoint ``path`` (see module doc) and read its index (not its values).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a ``.npy`` (pickle) file, an object array, or a truncated/corrupt file.
    """
    path = os.path.expanduser(os.fspath(path))
    magic = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            magic = f.read(6)
    if path.endswith(".npy") or magic == b"\x93NUMPY":
        raise ValueError(f"{path}: .npy model files are pickled dicts and loading them would run pickle, "
                         f"which is refused. {_npy_conversion_hint(path)}")
    if path.endswith(".npz") or magic.startswith(b"PK\x03\x04"):
        return _NpzFile(path)
    return _CheckpointFile(path)


def load_checkpoint_vars(path) -> dict:
    """All variables of an ``.npz`` or TF checkpoint as ``{op_name: ndarray}`` (``:0`` stripped)."""
    f = open_model_file(path)
    return f.read(list(f.describe()))


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def save_checkpoint_vars(dic: dict, path) -> None:
    """Write ``{name: array}`` to ``path``.

    ``path`` ending in ``.npz``: ``np.savez_compressed`` with the keys as given. Anything else: a
    TF checkpoint with prefix ``path`` (``path.index`` + ``path.data-*``, plus a ``checkpoint``
    state file in its directory, as ``tf.compat.v1.train.Saver.save`` does; no meta graph), keyed
    by op name (``:0`` stripped). Parent directories are created.
    """
    path = os.path.expanduser(os.fspath(path))
    arrays = {}
    for k, v in dic.items():
        a = np.asarray(v)
        if a.dtype.hasobject:
            raise ValueError(f"save_checkpoint_vars: {k!r} is not a numeric array (dtype object)")
        arrays[k] = a
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".npz"):
        np.savez_compressed(path, **arrays)
        return
    names = _keys_to_op_names(arrays, "save_checkpoint_vars")
    if not names:
        raise ValueError(f"save_checkpoint_vars: no variables to write to {path!r}")
    with tf.Graph().as_default() as g:
        feeds, var_list = {}, {}
        for i, (name, key) in enumerate(sorted(names.items())):
            a = arrays[key]
            ph = tfv1.placeholder(tf.as_dtype(a.dtype), a.shape, name=f"value{i}")
            var_list[name] = tfv1.Variable(ph, name=f"var{i}", trainable=False)
            feeds[ph] = a
        saver = tfv1.train.Saver(var_list=var_list, write_version=tfv1.train.SaverDef.V2)
        with tfv1.Session(graph=g) as sess:
            sess.run(tfv1.global_variables_initializer(), feed_dict=feeds)
            saver.save(sess, path, write_meta_graph=False)


def dump_model_params(session, path) -> dict:
    """Save a session's model parameters to ``path`` (``.npz`` or TF checkpoint, see
    :func:`save_checkpoint_vars`) and return them.

    Saved: GLOBAL_VARIABLES that are TRAINABLE or MODEL_VARIABLES, i.e. weights plus BatchNorm
    moving statistics (also in an inference-only graph), without optimizer slots, ``global_step``
    or summaries. Keys are tensor names with ``:0`` (op names in a TF checkpoint).
    """
    g = session.graph
    with g.as_default():
        wanted = {v.name for v in tfv1.trainable_variables()} | {v.name for v in tfv1.model_variables()}
        variables = [v for v in tfv1.global_variables() if v.name in wanted]
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise ValueError(f"dump_model_params: duplicate variable names in {names}")
    values = session.run(variables)
    dic = dict(zip(names, values, strict=True))
    save_checkpoint_vars(dic, path)
    logger.info("Saved %d model variables to %s", len(dic), path)
    return dic


# ------------------------------------------------------------------------------------------------
# Restoring
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RestoreReport:
    """What a :class:`SessionInit` did. All lists hold variable op names (no ``:0``).

    Attributes:
        source: what was restored from (a path, ``'dict'``, or several joined by ``' + '``).
        restored: graph variables that got a value.
        missing: graph variables the file lacks (they keep their initial values).
        missing_training_state: optimizer slots / global_step the file lacks (expected for inference
            files; not a problem).
        unused: file entries no graph variable uses.
        unused_training_state: file entries that are training state (optimizer slots ...).
        reshaped, cast: restored variables whose value was reshaped (same element count) or cast
            (float <-> float, or integer widening).
        skipped: variables left out because of a shape/dtype mismatch (``ignore_mismatch=True``).
    """

    source: str = ""
    restored: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    missing_training_state: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    unused_training_state: list = dataclasses.field(default_factory=list)
    reshaped: list = dataclasses.field(default_factory=list)
    cast: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)

    def merged(self, other: RestoreReport) -> RestoreReport:
        """Report of applying ``self`` then ``other``: a variable restored by either is restored."""
        restored = _ordered_union(self.restored, other.restored)
        done = set(restored)

        def pending(a, b):
            return [n for n in _ordered_union(a, b) if n not in done]

        return RestoreReport(
            source=" + ".join(s for s in (self.source, other.source) if s),
            restored=restored,
            missing=pending(self.missing, other.missing),
            missing_training_state=pending(self.missing_training_state, other.missing_training_state),
            unused=_ordered_union(self.unused, other.unused),
            unused_training_state=_ordered_union(self.unused_training_state, other.unused_training_state),
            reshaped=_ordered_union(self.reshaped, other.reshaped),
            cast=_ordered_union(self.cast, other.cast),
            skipped=pending(self.skipped, other.skipped),
        )

    def __str__(self):
        parts = [f"restored {len(self.restored)} variables from {self.source or 'nothing'}"]
        for label, items in (("missing in the file", self.missing), ("unused in the file", self.unused),
                             ("skipped (mismatch)", self.skipped), ("reshaped", self.reshaped),
                             ("cast", self.cast),
                             ("training state not in the file", self.missing_training_state),
                             ("training state in the file, unused", self.unused_training_state)):
            if items:
                parts.append(f"{label}: {len(items)} ({_short_list(items)})")
        return "; ".join(parts)


def _ordered_union(a, b):
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)


def _short_list(items, limit=8) -> str:
    items = list(items)
    s = ", ".join(items[:limit])
    return s + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


class SessionInit:
    """Base class: something that puts values into a graph's variables.

    ``init(sess)`` runs both halves: ``_setup_graph()`` (inspect the default graph, check
    everything, build nothing the session needs to run) and ``_run_init(sess)`` (load values).
    Predictors call the halves separately, after running the variable initializers, so a variable
    that is not restored keeps its initial value.
    """

    def init(self, sess) -> RestoreReport:
        """Set up against ``sess.graph`` and restore into ``sess``; returns the report."""
        with sess.graph.as_default():
            self._setup_graph()
        return self._run_init(sess)

    def _setup_graph(self):
        pass

    def _run_init(self, sess) -> RestoreReport:
        raise NotImplementedError


class JustCurrentSession(SessionInit):
    """Restore nothing (what ``SmartInit(None)`` gives)."""

    def _run_init(self, sess):
        return RestoreReport()


@dataclasses.dataclass
class _Assignment:
    variable: object
    key: str            # name in the file
    feed: object        # tensor whose value the variable's initializer assigns
    shape: tuple
    dtype: np.dtype
    reshape: bool
    cast: bool


def _feed_tensor(v):
    init = v.initializer
    if init.type in ("Assign", "AssignVariableOp") and len(init.inputs) == 2:
        return init.inputs[1]
    return v.initial_value


def is_float_dtype(dt: np.dtype) -> bool:
    """True for numpy floats and TensorFlow's extra ones (bfloat16 ... from ml_dtypes)."""
    if dt.kind == "f":
        return True
    try:
        return tf.as_dtype(dt).is_floating
    except TypeError:
        return False


def _dtype_ok(src: np.dtype, dst: np.dtype) -> bool:
    if src == dst:
        return True
    if is_float_dtype(src) and is_float_dtype(dst):
        return True
    return src.kind in "iu" and dst.kind in "iu" and np.can_cast(src, dst, "safe")


class _FileRestore(SessionInit):
    """Restore GLOBAL_VARIABLES from a :class:`ModelFile` (shared by DictRestore and SaverRestore)."""

    def __init__(self, model_file: ModelFile, ignore_mismatch=False, prefix=None, ignore=()):
        self._file = model_file
        self._ignore_mismatch = bool(ignore_mismatch)
        self._prefix = prefix.rstrip("/") + "/" if prefix else ""
        self._ignore = {op_name(n) for n in ignore}
        self._plan = None

    def _setup_graph(self):
        described = self._file.describe()
        report = RestoreReport(source=self._file.path)
        plan, problems, used = [], [], set()
        for v in tfv1.global_variables():
            name = v.op.name
            if name in self._ignore:
                continue
            key = name[len(self._prefix):] if self._prefix and name.startswith(self._prefix) else name
            if key not in described:
                (report.missing_training_state if is_training_name(name) else report.missing).append(name)
                continue
            used.add(key)
            fshape, fdtype = described[key]
            vshape = tuple(v.shape.as_list()) if v.shape.rank is not None else None
            vdtype = np.dtype(v.dtype.base_dtype.as_numpy_dtype)
            shape_ok = vshape is None or None in vshape or fshape == vshape
            reshape = not shape_ok and int(np.prod(fshape)) == int(np.prod(vshape))
            if (shape_ok or reshape) and _dtype_ok(fdtype, vdtype):
                plan.append(_Assignment(v, key, _feed_tensor(v), vshape, vdtype, reshape, fdtype != vdtype))
            else:
                problems.append(f"{name}: graph {_fmt(vshape, vdtype)}, file {_fmt(fshape, fdtype)}")
                report.skipped.append(name)
        for key in described:
            if key not in used:
                (report.unused_training_state if is_training_name(key) else report.unused).append(key)
        if problems and not self._ignore_mismatch:
            raise ValueError(f"Cannot restore from {self._file.path}: {len(problems)} variable(s) do not match "
                             "(shape with a different number of elements, or a dtype that cannot be cast "
                             "safely); pass ignore_mismatch=True to skip them:\n  " + "\n  ".join(problems))
        for p in problems:
            logger.warning("Skipping variable (ignore_mismatch=True) %s", p)
        for a in plan:
            if a.reshape:
                logger.warning("Variable %s: reshaping the value from %s to %s (same number of elements)",
                               a.variable.op.name, described[a.key][0], a.shape)
            if a.cast:
                logger.warning("Variable %s: casting the value from %s to %s", a.variable.op.name,
                               described[a.key][1], a.dtype)
        report.restored = [a.variable.op.name for a in plan]
        report.reshaped = [a.variable.op.name for a in plan if a.reshape]
        report.cast = [a.variable.op.name for a in plan if a.cast]
        self._plan = (plan, report)

    def _run_init(self, sess):
        if self._plan is None:
            raise RuntimeError(f"{type(self).__name__}: _setup_graph() must run before _run_init()")
        plan, report = self._plan
        values = self._file.read([a.key for a in plan])
        feed = {}
        for a in plan:
            value = values[a.key]
            if a.reshape:
                value = value.reshape(a.shape)
            if a.cast:
                value = value.astype(a.dtype)
            feed[a.feed] = value
        if plan:
            sess.run([a.variable.initializer for a in plan], feed_dict=feed)
        self._plan = None   # don't keep the graph alive
        _log_report(report)
        return report


def _fmt(shape, dtype) -> str:
    s = "unknown" if shape is None else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
    return f"shape {s} {np.dtype(dtype).name}"


def _log_report(r: RestoreReport):
    logger.info("Restored %d variables from %s", len(r.restored), r.source)
    if r.missing:
        logger.warning("Variables in the graph but not in %s (they keep their initial values): %s",
                       r.source, ", ".join(r.missing))
    if r.unused:
        logger.warning("Variables in %s but not in the graph (unused): %s", r.source, ", ".join(r.unused))
    if r.unused_training_state:
        logger.info("Training state in %s not used for this graph: %s", r.source,
                    _short_list(r.unused_training_state))


class DictRestore(_FileRestore):
    """Restore from a dict ``{variable name: array}``; names with or without ``:0``.

    Args:
        variable_dict: the values (converted with ``np.asarray``; object arrays are refused).
        ignore_mismatch: False (default) makes any shape/dtype mismatch an error listing all of
            them; True skips those variables with a log line.
    """

    def __init__(self, variable_dict: dict, ignore_mismatch=False):
        super().__init__(_DictFile(variable_dict), ignore_mismatch=ignore_mismatch)


class SaverRestore(_FileRestore):
    """Restore from a TF checkpoint or an ``.npz`` (any path :func:`open_model_file` accepts).

    Args:
        model_path: the file (see :func:`get_checkpoint_path` for checkpoint spellings).
        prefix: graph variables named ``prefix/xxx`` are looked up as ``xxx`` in the file; default
            None looks up every variable by its own name.
        ignore: graph variable names never restored; default none.
        ignore_mismatch: as in :class:`DictRestore` (default False: mismatches are an error).
    """

    def __init__(self, model_path, prefix=None, ignore=(), ignore_mismatch=False):
        super().__init__(open_model_file(model_path), ignore_mismatch=ignore_mismatch, prefix=prefix,
                         ignore=ignore)


class ChainInit(SessionInit):
    """Apply several SessionInits in order (a later one overwrites an earlier one's values)."""

    def __init__(self, session_inits):
        self.inits = list(session_inits)

    def _setup_graph(self):
        for i in self.inits:
            i._setup_graph()

    def _run_init(self, sess):
        report = RestoreReport()
        for i in self.inits:
            report = report.merged(i._run_init(sess))
        return report


def SmartInit(obj, *, ignore_mismatch=False) -> SessionInit:
    """Pick the right :class:`SessionInit` for ``obj``.

    Args:
        obj: None or '' (restore nothing); a path to an ``.npz`` or a TF checkpoint (a ``model-N``
            prefix, its ``.index``/``.data-*`` file, the ``checkpoint`` state file or its
            directory); a dict name -> array; a SessionInit (returned as is); or a list of these,
            applied in order.
        ignore_mismatch: False (default): variables whose shape (with a different element count)
            or dtype cannot be restored are an error listing them all; True: skip them with a log
            line. Either way, values with the same element count are reshaped, floats are cast to
            the variable's float dtype and integers widened (each logged); any other dtype change
            (float -> int, int narrowing, int -> float ...) is a mismatch.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a ``.npy`` or pickled file, a truncated/corrupt file.
    """
    if obj is None or (isinstance(obj, str) and not obj):
        return JustCurrentSession()
    if isinstance(obj, SessionInit):
        return obj
    if isinstance(obj, (list, tuple)):
        return ChainInit([SmartInit(o, ignore_mismatch=ignore_mismatch) for o in obj])
    if isinstance(obj, dict):
        return DictRestore(obj, ignore_mismatch=ignore_mismatch)
    if isinstance(obj, (str, os.PathLike)):
        return SaverRestore(obj, ignore_mismatch=ignore_mismatch)
    raise TypeError(f"SmartInit: expected a path, a dict, a SessionInit, None or a list of these, "
                    f"got {type(obj).__name__}")


#: tensorpack's old name for :func:`SmartInit`.
get_model_loader = SmartInit

"""Train a zoo model on a bundled dataset, the way a user's tensorpack-style training script would.

    python -m model_zoo.train mnist-convnet --dataset digits --out train_logs/digits --epochs 15 --seed 0

What it does (no tensorpack trainer, just ``layers`` + ``tf.compat.v1``):

1. builds the training tower under ``TowerContext('', is_training=True)``; the cost includes the
   model's weight decay (``layers.regularize_cost``); ``train_op`` groups the optimizer step
   (a ``tf.compat.v1.train`` optimizer from ``ModelDesc.optimizer()``) with ``UPDATE_OPS``
   (BatchNorm moving statistics);
2. builds a second, inference tower (``PredictTowerContext('InferenceTower')`` under
   ``reuse=True``) sharing the variables, and evaluates the held-out split with it after every
   epoch — never with the training graph (dropout off, BatchNorm on its moving statistics);
3. shows a tqdm bar per epoch with the running loss and accuracy, and writes
   * TensorBoard event files (``tf.compat.v1.summary.FileWriter``: per-step ``train_cost``,
     ``train_cross_entropy``, ``train_accuracy``, ``learning_rate-summary``; per-epoch
     ``heldout_accuracy``, ``heldout_loss``),
   * a ``model-<step>`` TF checkpoint (``tf.compat.v1.train.Saver``, every epoch, newest kept),
   * ``model.npz``: the model parameters (``layers.dump_model_params``: weights + BatchNorm
     statistics, keyed ``name:0``, loadable with ``layers.SmartInit``),
   * ``metrics.json``: per-epoch loss/accuracies/wall time, the command line, seed, versions;
4. with ``--export REPO/NAME/VERSION`` also copies ``model.npz`` + ``metrics.json`` there and
   writes ``REPO/NAME/config.json`` (architecture and options), the model-repository layout the
   service reads.

Learning rate: the model's default (Adam 1e-3 for mnist-convnet, as tensorpack's example) or
``--lr``, multiplied by ``--lr-decay`` (0.3) every ``--lr-decay-every`` (5) epochs through an
assign to the model's ``learning_rate`` variable (tensorpack's ``ScheduledHyperParamSetter``).

Reproducibility: ``--seed`` seeds TensorFlow's graph-level seed (weight initialisation, dropout)
and NumPy's shuffling; the held-out split does not depend on it. Two runs with the same seed on
the same machine give the same metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import tensorflow as tf

from layers import PredictTowerContext, TowerContext, dump_model_params

from . import datasets as D
from .registry import get, names
from .spec import ZooModel
from .utils import count_parameters

__all__ = ["train", "main", "build_parser", "models_fitting", "TrainResult"]

tfv1 = tf.compat.v1

INFERENCE_TOWER = "InferenceTower"
EVAL_BATCH = 256


def models_fitting(dataset: D.Dataset) -> list[str]:
    """Registered architectures (default options) whose input and classes fit ``dataset``."""
    return [n for n in names() if _fits(get(n), dataset)]


def _fits(zoo: ZooModel, ds: D.Dataset) -> bool:
    spec = zoo.input
    return (len(zoo.inputs) == 1 and tuple(spec.shape) == tuple(ds.image_shape) and spec.dtype == ds.dtype
            and zoo.num_classes == ds.num_classes)


def _versions() -> dict:
    out = {"python": platform.python_version(), "tensorflow": tf.__version__, "numpy": np.__version__}
    for dist in ("scikit-learn", "tpserve"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _progress(iterable, **kwargs):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency; degrade to no bar
        return iterable
    return tqdm(iterable, **kwargs)


class TrainResult(dict):
    """The metrics dict written to ``metrics.json`` (a dict subclass for a readable type name)."""


def train(model: str, dataset: str, out: str | os.PathLike, *, epochs: int = 15, batch_size: int = 64,
          lr: float | None = None, lr_decay: float = 0.3, lr_decay_every: int = 5, seed: int = 0,
          options: dict | None = None, limit: int | None = None, export: str | os.PathLike | None = None,
          progress: bool = True, command: str | None = None) -> TrainResult:
    """Train ``model`` on ``dataset`` and write the artefacts to ``out`` (see the module docstring).

    Args:
        model: registered architecture name; options: its options (as ``model_zoo.get``).
        dataset: a name from :data:`model_zoo.datasets.DATASETS`.
        out: output directory (created if missing; use a fresh one per run).
        epochs: passes over the training split. batch_size: examples per step (the last partial
            batch of an epoch is dropped, as tensorpack's ``BatchData`` does for training).
        lr: initial learning rate; None keeps the model's default (Adam 1e-3 for mnist-convnet).
        lr_decay, lr_decay_every: multiply the learning rate by ``lr_decay`` after every
            ``lr_decay_every`` epochs (a step schedule, like tensorpack's ``ScheduledHyperParamSetter``
            or mnist-convnet.py's staircase decay); default 0.3 every 5 epochs, 1.0 keeps it constant.
        seed: seeds TensorFlow (initialisation, dropout) and the NumPy shuffling.
        limit: train on the first ``limit`` training examples only (quick runs and tests); the
            held-out evaluation always uses the whole held-out split.
        export: ``REPO/NAME/VERSION`` directory to copy ``model.npz`` + ``metrics.json`` into.
        progress: show tqdm bars.
        command: the command line recorded in metrics.json (default: rebuilt from the arguments).

    Returns: the metrics (also written to ``out/metrics.json``).

    Raises:
        ValueError: unknown model/option/dataset, a model that does not fit the dataset (the
            message lists those that do), or invalid numbers.
    """
    for arg, val, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if isinstance(val, bool) or not isinstance(val, int) or val < low:
            raise ValueError(f"train: {arg} must be an int >= {low}, got {val!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"train: limit must be None or an int >= 1, got {limit!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"train: lr must be a positive number, got {lr!r}")
    if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
        raise ValueError(f"train: lr_decay must be in (0, 1], got {lr_decay!r}")
    if isinstance(lr_decay_every, bool) or not isinstance(lr_decay_every, int) or lr_decay_every < 1:
        raise ValueError(f"train: lr_decay_every must be an int >= 1, got {lr_decay_every!r}")
    options = dict(options or {})
    zoo = get(model, **options)
    ds = D.load(dataset)
    if not _fits(zoo, ds):
        raise ValueError(
            f"model {model!r} does not fit dataset {dataset!r}: the model takes {zoo.input.dtype} "
            f"{tuple(zoo.input.shape)} with {zoo.num_classes} classes, the dataset has {ds.dtype} "
            f"{tuple(ds.image_shape)} with {ds.num_classes} classes; models that fit: "
            f"{', '.join(models_fitting(ds)) or 'none'}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = _command_line(model, dataset, out, epochs, batch_size, lr, lr_decay, lr_decay_every, seed,
                                options, limit, export)

    train_x, train_y = ds.train_x, ds.train_y
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    n_train = len(train_x)
    batch_size = min(batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    if lr is not None:
        zoo.model.learning_rate = float(lr)

    t_start = time.monotonic()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rs = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        tfv1.set_random_seed(seed)
        image, label = zoo.model.create_placeholders()
        with TowerContext("", is_training=True):
            cost = zoo.model.build_graph(image, label)
        xent = graph.get_tensor_by_name("cross_entropy_loss:0")
        accuracy = graph.get_tensor_by_name("accuracy:0")
        global_step = tfv1.train.get_or_create_global_step()
        opt = zoo.model.get_optimizer()
        minimize = opt.minimize(cost, global_step=global_step)
        lr_var = next(v for v in tfv1.global_variables() if v.op.name == "learning_rate")
        lr_value = tfv1.placeholder(lr_var.dtype.base_dtype, [], name="learning_rate_value")
        set_lr = lr_var.assign(lr_value)
        train_op = tf.group(minimize, *tfv1.get_collection(tfv1.GraphKeys.UPDATE_OPS), name="train_op")
        tfv1.summary.scalar("train_cost", cost)
        tfv1.summary.scalar("train_cross_entropy", xent)
        tfv1.summary.scalar("train_accuracy", accuracy)
        summaries = tfv1.summary.merge_all()

        # Held-out evaluation: a second tower on the same variables, built for inference.
        with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True), \
                PredictTowerContext(INFERENCE_TOWER):
            zoo.model.build_graph(image, label)
        eval_prob = graph.get_tensor_by_name(f"{INFERENCE_TOWER}/{zoo.output('prob').tensor}")

        saver = tfv1.train.Saver(max_to_keep=1)
        init = tfv1.global_variables_initializer()
        writer = tfv1.summary.FileWriter(str(out), graph=graph)   # needs graph mode: inside the graph
    graph.finalize()

    history = []
    ckpt_path = None
    with tfv1.Session(graph=graph) as sess:
        sess.run(init)
        base_lr = float(zoo.model.learning_rate)
        for epoch in range(1, epochs + 1):
            t_epoch = time.monotonic()
            epoch_lr = base_lr * lr_decay ** ((epoch - 1) // lr_decay_every)
            sess.run(set_lr, {lr_value: epoch_lr})
            order = rs.permutation(n_train)
            losses, accs = [], []
            bar = _progress(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="step",
                            disable=not progress, leave=True, dynamic_ncols=True, file=sys.stderr)
            for i in bar:
                idx = order[i * batch_size:(i + 1) * batch_size]
                _, c, a, s, step = sess.run([train_op, cost, accuracy, summaries, global_step],
                                            {image: train_x[idx], label: train_y[idx]})
                losses.append(float(c))
                accs.append(float(a))
                writer.add_summary(s, step)
                if progress and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{np.mean(losses):.4f}", acc=f"{np.mean(accs):.4f}")
            held_acc, held_loss = _evaluate(sess, image, eval_prob, ds.heldout_x, ds.heldout_y)
            step = int(sess.run(global_step))
            writer.add_summary(tfv1.Summary(value=[
                tfv1.Summary.Value(tag="heldout_accuracy", simple_value=held_acc),
                tfv1.Summary.Value(tag="heldout_loss", simple_value=held_loss)]), step)
            writer.flush()
            ckpt_path = saver.save(sess, str(out / "model"), global_step=step)
            now = time.monotonic()
            history.append({"epoch": epoch, "step": step, "learning_rate": epoch_lr, "loss": float(np.mean(losses)),
                            "train_accuracy": float(np.mean(accs)), "heldout_accuracy": held_acc,
                            "heldout_loss": held_loss, "epoch_time_s": round(now - t_epoch, 3),
                            "wall_time_s": round(now - t_start, 3)})
            if progress:
                print(f"epoch {epoch}: loss {history[-1]['loss']:.4f}  train acc "
                      f"{history[-1]['train_accuracy']:.4f}  held-out acc {held_acc:.4f}  "
                      f"({now - t_epoch:.1f} s)", file=sys.stderr)
        npz_path = out / "model.npz"
        params = dump_model_params(sess, str(npz_path))
    writer.close()
    wall = time.monotonic() - t_start

    result = TrainResult(
        model=model, options=zoo.options, dataset=dataset,
        dataset_info={"train_examples": n_train, "heldout_examples": int(len(ds.heldout_y)),
                      "split_seed": D.SPLIT_SEED, "heldout_fraction": D.HELDOUT_FRACTION,
                      "image_shape": list(ds.image_shape)},
        command=command, seed=seed, epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        learning_rate=float(zoo.model.learning_rate), lr_decay=lr_decay, lr_decay_every=lr_decay_every,
        optimizer=type(opt).__name__, limit=limit,
        history=history,
        final={"loss": history[-1]["loss"], "train_accuracy": history[-1]["train_accuracy"],
               "heldout_accuracy": history[-1]["heldout_accuracy"], "heldout_loss": history[-1]["heldout_loss"]},
        wall_time_s=round(wall, 3),
        parameters=count_parameters(zoo),
        artifacts={"checkpoint": Path(ckpt_path).name, "npz": npz_path.name,
                   "npz_bytes": npz_path.stat().st_size, "npz_variables": len(params),
                   "events": sorted(p.name for p in out.glob("events.out.tfevents.*"))},
        host={"cpu_count": os.cpu_count(), "load_average_1m_at_start": load_start,
              "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "platform": platform.platform()},
        versions=_versions(),
    )
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if export is not None:
        _export(zoo, out, Path(export))
    return result


def _evaluate(sess, image, prob, x, y):
    probs = np.concatenate([sess.run(prob, {image: x[i:i + EVAL_BATCH]}) for i in range(0, len(x), EVAL_BATCH)])
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    loss = float(np.mean(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))
    return acc, loss


def _export(zoo: ZooModel, out: Path, version_dir: Path):
    """Copy model.npz + metrics.json into REPO/NAME/VERSION and write REPO/NAME/config.json."""
    if not version_dir.name.isdigit():
        raise ValueError(f"--export: the last path component must be a version number, got {str(version_dir)!r}")
    config_path = version_dir.parent / "config.json"
    wanted = {"architecture": zoo.architecture, "options": zoo.options}
    if config_path.exists():
        existing = json.loads(config_path.read_text())
        if existing.get("architecture") != wanted["architecture"] or \
                {**wanted["options"], **existing.get("options", {})} != wanted["options"]:
            raise ValueError(f"--export: {config_path} describes {existing.get('architecture')!r} with options "
                             f"{existing.get('options')}, not {wanted['architecture']!r} with {wanted['options']}")
    else:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        minimal = {"architecture": zoo.architecture,
                   "options": {k: v for k, v in zoo.options.items() if v != type(zoo.config)().options()[k]}}
        config_path.write_text(json.dumps(minimal, indent=2) + "\n")
    version_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.npz", "metrics.json"):
        shutil.copyfile(out / name, version_dir / name)


def _command_line(model, dataset, out, epochs, batch_size, lr, lr_decay, lr_decay_every, seed, options, limit,
                  export) -> str:
    argv = ["python", "-m", "model_zoo.train", model, "--dataset", dataset, "--out", str(out),
            "--epochs", str(epochs), "--batch-size", str(batch_size), "--seed", str(seed)]
    if lr is not None:
        argv += ["--lr", repr(float(lr))]
    argv += ["--lr-decay", repr(float(lr_decay)), "--lr-decay-every", str(lr_decay_every)]
    for k, v in sorted(options.items()):
        argv += ["--option", f"{k}={json.dumps(v)}"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if export is not None:
        argv += ["--export", str(export)]
    return shlex.join(argv)


def _parse_option(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value                     # a bare string such as NCHW
    return key, parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_zoo.train",
        description="Train a model-zoo architecture on a bundled dataset with layers + tf.compat.v1 and write "
                    "a TF checkpoint, model.npz (the model parameters), TensorBoard events and metrics.json.",
        epilog="Example: python -m model_zoo.train mnist-convnet --dataset digits --out train_logs/digits "
               "--epochs 15 --seed 0 --export model_repository/digits/1")
    p.add_argument("model", help=f"architecture to train; registered: {', '.join(names())} "
                                 "(only those whose input fits the dataset can train on it)")
    p.add_argument("--dataset", required=True, choices=D.dataset_names(),
                   help="digits: scikit-learn's 8x8 digits upsampled to 28x28, fixed 80/20 split")
    p.add_argument("--out", required=True,
                   help="output directory (created if missing; files of an earlier run in it are overwritten or, "
                        "like old event files, left in place: use a fresh directory per run)")
    p.add_argument("--epochs", type=int, default=15, help="passes over the training split (default: 15)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step (default: 64)")
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default: the model's own, e.g. Adam 1e-3 for mnist-convnet)")
    p.add_argument("--lr-decay", type=float, default=0.3,
                   help="multiply the learning rate by this after every --lr-decay-every epochs "
                        "(default: 0.3; 1 keeps it constant)")
    p.add_argument("--lr-decay-every", type=int, default=5, help="epochs between learning-rate decays (default: 5)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for weight initialisation, dropout and shuffling (default: 0); the held-out "
                        "split is fixed and does not depend on it")
    p.add_argument("--option", action="append", type=_parse_option, default=[], metavar="KEY=VALUE",
                   help="architecture option (repeatable), value parsed as JSON when possible, "
                        "e.g. --option dropout_rate=0.3")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N training examples only (quick runs/tests); the held-out "
                        "evaluation always uses the whole held-out split")
    p.add_argument("--export", default=None, metavar="REPO/NAME/VERSION",
                   help="also copy model.npz and metrics.json into this model-repository version directory "
                        "and write REPO/NAME/config.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return p


def main(argv=None) -> int:
    """Entry point of ``python -m model_zoo.train``; returns the exit status (2 on bad arguments)."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    options = dict(args.option)
    command = shlex.join(["python", "-m", "model_zoo.train", *raw])
    try:
        result = train(args.model, args.dataset, args.out, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, lr_decay=args.lr_decay, lr_decay_every=args.lr_decay_every, seed=args.seed,
                       options=options, limit=args.limit, export=args.export, progress=not args.no_progress,
                       command=command)
    except ValueError as e:
        parser.error(str(e))           # exits with status 2
    final = result["final"]
    print(f"done in {result['wall_time_s']:.1f} s: held-out accuracy {final['heldout_accuracy']:.4f} "
          f"({result['dataset_info']['heldout_examples']} images); artefacts in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

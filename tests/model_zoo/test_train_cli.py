"""The training CLI: a short run (``--limit``) writes every artefact, the same seed gives the same
metrics, and bad requests fail with the valid choices. The runs are real subprocesses, exactly
what a user types."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import model_zoo
from model_zoo.train import main, train

tfv1 = tf.compat.v1

ARGS = ["--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--limit", "96", "--seed", "7",
        "--no-progress"]
METRIC_KEYS = {"model", "options", "dataset", "dataset_info", "command", "seed", "epochs", "batch_size",
               "steps_per_epoch", "learning_rate", "lr_decay", "lr_decay_every", "optimizer", "limit", "history",
               "final", "wall_time_s", "parameters", "artifacts", "host", "versions"}
EPOCH_KEYS = {"epoch", "step", "learning_rate", "loss", "train_accuracy", "heldout_accuracy", "heldout_loss",
              "epoch_time_s", "wall_time_s"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs with the same seed: the CLI in a subprocess (also exporting to a model repository)
    and, meanwhile, ``train()`` in this process."""
    base = tmp_path_factory.mktemp("train")
    outs = [base / "a", base / "b"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "model_zoo.train", "mnist-convnet", *ARGS, "--out", str(outs[0]),
                             "--export", str(base / "repo" / "digits" / "3")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        train("mnist-convnet", "digits", outs[1], epochs=2, batch_size=32, limit=96, seed=7, progress=False)
    finally:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "held-out accuracy" in stdout
    return base, outs


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_metrics_json_has_every_field(runs):
    _, (out, _) = runs
    m = _metrics(out)
    assert set(m) == METRIC_KEYS
    assert len(m["history"]) == 2 and all(set(h) == EPOCH_KEYS for h in m["history"])
    assert m["dataset_info"]["train_examples"] == 96 and m["steps_per_epoch"] == 3
    assert m["history"][-1]["step"] == 6
    assert m["command"].startswith("python -m model_zoo.train mnist-convnet --dataset digits --epochs 2")
    assert m["parameters"] == 3_252_106 and m["optimizer"] == "AdamOptimizer"
    assert 0.0 <= m["final"]["heldout_accuracy"] <= 1.0


def test_same_seed_gives_the_same_metrics(runs):
    _, (a, b) = runs
    ma, mb = _metrics(a), _metrics(b)
    for ha, hb in zip(ma["history"], mb["history"], strict=True):
        for key in ("loss", "train_accuracy", "heldout_accuracy", "heldout_loss", "step"):
            assert ha[key] == hb[key], key
    with np.load(a / "model.npz") as na, np.load(b / "model.npz") as nb:
        for k in na.files:
            np.testing.assert_array_equal(na[k], nb[k])


def test_writes_a_checkpoint_with_the_training_state(runs):
    _, (out, _) = runs
    assert (out / "checkpoint").is_file() and (out / "model-6.index").is_file()
    names = {n for n, _ in tf.train.list_variables(str(out / "model-6"))}
    assert {"conv0/W", "fc1/b", "global_step", "learning_rate", "fc0/W/Adam"} <= names


def test_held_out_evaluation_uses_an_inference_tower(runs):
    _, (out, _) = runs
    with tf.Graph().as_default() as g:
        tfv1.train.import_meta_graph(str(out / "model-6.meta"))
        ops = {op.name for op in g.get_operations()}
    assert "InferenceTower/prob" in ops and "prob" in ops
    assert not any(n.startswith("InferenceTower/") and "dropout" in n.lower() for n in ops)


def test_npz_holds_the_model_parameters_and_restores(runs):
    _, (out, _) = runs
    zoo = model_zoo.get("mnist-convnet")
    with np.load(out / "model.npz") as npz:
        assert sorted(npz.files) == sorted(f"{n}:0" for n in ("conv0/W", "conv0/b", "conv1/W", "conv1/b", "conv2/W",
                                                               "conv2/b", "fc0/W", "fc0/b", "fc1/W", "fc1/b"))
    m = _metrics(out)
    assert m["artifacts"]["npz"] == "model.npz" and m["artifacts"]["npz_variables"] == 10
    assert model_zoo.count_parameters(zoo) == m["parameters"]


def test_writes_tensorboard_events_with_scalars(runs):
    from tensorflow.core.util import event_pb2

    _, (out, _) = runs
    events = sorted(out.glob("events.out.tfevents.*"))
    assert len(events) == 1
    records = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(events[0]))]
    tags = {v.tag for e in records for v in e.summary.value}
    assert {"train_cost", "train_cross_entropy", "train_accuracy", "learning_rate-summary", "heldout_accuracy",
            "heldout_loss"} <= tags
    assert any(e.graph_def for e in records)                     # the graph, for TensorBoard's graph tab


def test_export_writes_the_model_repository_layout(runs):
    base, (out, _) = runs
    model_dir = base / "repo" / "digits"
    assert json.loads((model_dir / "config.json").read_text()) == {"architecture": "mnist-convnet", "options": {}}
    assert (model_dir / "3" / "model.npz").read_bytes() == (out / "model.npz").read_bytes()
    assert json.loads((model_dir / "3" / "metrics.json").read_text())["command"].endswith("/digits/3")


def test_help_describes_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--out", "--epochs", "--batch-size", "--lr", "--seed", "--limit", "--option",
                 "--export", "--lr-decay"):
        assert flag in text
    assert "mnist-convnet" in text


def test_model_that_does_not_fit_the_dataset_lists_those_that_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["imagenet-resnet", "--dataset", "digits", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "does not fit dataset 'digits'" in err and "models that fit: mnist-convnet" in err


def test_unknown_option_fails_with_the_valid_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["mnist-convnet", "--dataset", "digits", "--out", str(tmp_path / "x"), "--option", "depth=18"])
    assert e.value.code == 2
    assert "unknown option(s) ['depth']; valid options: dropout_rate" in capsys.readouterr().err


def test_unknown_model_fails_with_the_registered_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["resnet", "--dataset", "digits", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "valid choices: cifar10-resnet, imagenet-resnet, mnist-convnet" in capsys.readouterr().err

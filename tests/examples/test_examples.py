"""The scripts in ``examples/`` end to end: each trains in a subprocess on its ``--fake`` data
(shrunk by its own options), then the run is checked from outside: the loss fell, the files a
tensorpack run leaves are there, ``SmartInit`` restores the checkpoint strictly into a fresh
inference graph whose predictions reproduce the run's own validation statistic, and a real
``python -m service`` on 127.0.0.1 serves the trained model (``"architecture":
"examples.<module>:Model"``) with the predictor's outputs on ``/predict`` and v2 ``infer``.

The three trainings run at the same time and one server serves all three models, to keep the
folder to a few tens of seconds on 2 cores.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib
import json
import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest

import layers
from examples import fake_data
from layers.dataflow import dataset

from ..service.realmodel import ROOT
from ..service.server import wait_models_settled
from ..service.test_drain import _free_port

EPOCHS = 3


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    module: str
    args: tuple        # command-line options that shrink the run
    options: dict      # the Model(**options) the run trained
    output: str        # the softmax tensor served
    steps: int         # steps per epoch

    def model(self):
        return importlib.import_module(self.module).Model(**self.options)


EXAMPLES = {
    "mnist": Example("mnist", "examples.mnist_convnet", ("--filters", "8", "--hidden", "32", "--batch", "32"),
                     {"filters": 8, "hidden": 32}, "prob", 80),   # 40 steps: a slow start (ratio 0.82 seen) failed
    "cifar": Example("cifar", "examples.cifar_convnet", ("--filters", "4", "--batch", "32", "--workers", "2"),
                     {"cifar_classnum": 10, "filters": 4}, "prob", 30),
    # two towers of the replicated trainer: the checkpoint must still hold plain, single-tower names
    "resnet": Example("resnet", "examples.cifar10_resnet",
                      ("-n", "1", "--filters", "4", "--batch", "16", "--workers", "1", "--num-gpu", "2",
                       "--trainer", "replicated"), {"n": 1, "filters": 4}, "output", 20),
}


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train the three examples (concurrently); ``{name: train_log directory}``."""
    root = tmp_path_factory.mktemp("examples")
    procs = {}
    for ex in EXAMPLES.values():
        logdir = root / ex.name
        cmd = [sys.executable, "-m", ex.module, "--fake", "--logdir", str(logdir), "--max-epoch", str(EPOCHS),
               "--steps-per-epoch", str(ex.steps), *ex.args]
        log = open(root / f"{ex.name}.out", "w")       # noqa: SIM115  (closed below)
        procs[ex.name] = (subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT), log, logdir)
    for name, (proc, log, _) in procs.items():
        rc = proc.wait(300)
        log.close()
        assert rc == 0, f"{name} failed:\n" + (root / f"{name}.out").read_text()[-5000:]
    return {name: logdir for name, (_, _, logdir) in procs.items()}


def _stats(logdir):
    with open(logdir / "stats.json") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_training_loss_falls(runs, name):
    stats = _stats(runs[name])
    assert [s["epoch_num"] for s in stats] == list(range(1, EPOCHS + 1))
    first, last = stats[0]["cross_entropy_loss"], stats[-1]["cross_entropy_loss"]
    assert last < 0.8 * first, [s["cross_entropy_loss"] for s in stats]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_checkpoints_stats_and_events_appear(runs, name):
    logdir, ex = runs[name], EXAMPLES[name]
    steps = [ex.steps * k for k in range(1, EPOCHS + 1)]
    assert [s["global_step"] for s in _stats(logdir)] == steps
    ckpt = (logdir / "checkpoint").read_text()
    assert f'model_checkpoint_path: "model-{steps[-1]}"' in ckpt     # relative: the directory can move
    for step in steps:
        assert (logdir / f"model-{step}.index").is_file()
        assert glob.glob(str(logdir / f"model-{step}.data-*"))
    assert glob.glob(str(logdir / "events.out.tfevents.*"))
    assert (logdir / "log.log").is_file()
    if name == "mnist":     # MaxSaver('val_accuracy') kept a copy of the best epoch's checkpoint
        assert (logdir / "max-val_accuracy.index").is_file()


def _cifar_test_batches(ex, data_dir):
    module = importlib.import_module(ex.module)
    if ex.name == "cifar":
        ds = module.get_data("test", 10, str(data_dir), batch=32)
    else:
        ds = module.get_data("test", str(data_dir), batch=16)
    ds.reset_state()
    return list(ds)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The test splits the runs validated on, rebuilt by the same generator: ``{name: [[x, y], ...]}``
    (batches as the scripts' InferenceRunner saw them)."""
    root = tmp_path_factory.mktemp("fake_data")
    mnist_dir = fake_data.write_mnist(root / "mnist")
    mnist = dataset.Mnist("test", shuffle=False, dir=mnist_dir)
    x = np.stack([img for img, _ in mnist]).astype(np.float32)
    y = np.array([label for _, label in mnist], np.int32)
    cifar_dir = fake_data.write_cifar(root / "cifar")
    return {"mnist": [[x, y]], "cifar": _cifar_test_batches(EXAMPLES["cifar"], cifar_dir),
            "resnet": _cifar_test_batches(EXAMPLES["resnet"], cifar_dir)}


@pytest.fixture(scope="module")
def predictors(runs, server_process):
    """A strict ``OfflinePredictor`` per run, restored by ``SmartInit(train_log directory)`` (the
    server starts first, to boot meanwhile)."""
    preds = {}
    try:
        for name, ex in EXAMPLES.items():
            config = layers.PredictConfig(model=ex.model(), input_names=["input"], output_names=[ex.output],
                                          session_init=layers.SmartInit(str(runs[name])))
            preds[name] = layers.OfflinePredictor(config)
        yield preds
    finally:
        for pred in preds.values():
            pred.close()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_smartinit_restores_every_model_variable_from_the_last_checkpoint(runs, predictors, name):
    report = predictors[name].restore_report
    assert report.missing == [] and report.skipped == []
    saved = layers.load_checkpoint_vars(str(runs[name]))
    assert not [k for k in saved if k.startswith("tower")]          # replicas' copies are not saved
    graph = predictors[name].graph
    model_vars = {v.op.name for v in graph.get_collection("variables")}
    assert model_vars == set(report.restored) and model_vars <= set(saved)
    with graph.as_default():
        values = predictors[name].session.run({v.op.name: v for v in graph.get_collection("variables")})
    for k, v in values.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_mnist_predictions_reproduce_the_validation_stats(runs, predictors, data):
    (x, y), = data["mnist"]
    prob = predictors["mnist"](x)[0]
    last = _stats(runs["mnist"])[-1]
    # the script validates on one batch of 256, so ScalarStats' mean of batch means is the plain mean
    assert np.mean(np.argmax(prob, 1) == y) == pytest.approx(last["val_accuracy"], abs=1.01 / len(y))
    xent = -np.mean(np.log(prob[np.arange(len(y)), y]))
    assert xent == pytest.approx(last["val_cross_entropy_loss"], rel=1e-3)


def test_cifar_convnet_predictions_reproduce_validation_accuracy(runs, predictors, data):
    # ScalarStats: the mean over the test batches (the last one partial) of each batch's accuracy;
    # an argmax tie broken differently may move one image
    per_batch = [np.mean(np.argmax(predictors["cifar"](x)[0], 1) == y) for x, y in data["cifar"]]
    last = _stats(runs["cifar"])[-1]
    assert np.mean(per_batch) == pytest.approx(last["validation_accuracy"], abs=1.01 / 32 / len(per_batch))


def test_resnet_predictions_reproduce_the_classification_error(runs, predictors, data):
    # ClassificationError: misclassified images / all images
    wrong = np.concatenate([np.argmax(predictors["resnet"](x)[0], 1) != y for x, y in data["resnet"]])
    last = _stats(runs["resnet"])[-1]
    assert np.mean(wrong) == pytest.approx(last["validation_error"], abs=1.01 / len(wrong))


@pytest.fixture(scope="module")
def server_process(runs, tmp_path_factory):
    """``python -m service`` on a repository whose entries import the examples' Model classes, each
    version a copy of the run's train_log; started as soon as training is done, so it boots while
    the in-process checks run. ``(process, port, log path)``."""
    repo = tmp_path_factory.mktemp("examples_repo")
    for name, ex in EXAMPLES.items():
        shutil.copytree(runs[name], repo / name / "1")
        config = {"architecture": f"{ex.module}:Model", "options": ex.options, "outputs": [ex.output]}
        (repo / name / "config.json").write_text(json.dumps(config))
    port = _free_port()
    env = dict(_env(), TPSERVE_POLL_INTERVAL_S="0", TPSERVE_INTRA_OP_THREADS="1", TPSERVE_INTER_OP_THREADS="1",
               TPSERVE_DRAIN_GRACE_S="0")
    log_path = repo.parent / "examples_server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--model-repository",
                                 str(repo)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, port, log_path
    finally:
        proc.kill()     # graceful shutdown is tested in tests/service/test_drain.py
        proc.wait(30)


@pytest.fixture(scope="module")
def server(server_process):
    """An HTTP client of the server, once every model has loaded (or failed to)."""
    proc, port, log_path = server_process
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        wait_models_settled(client, proc, log_path, count=len(EXAMPLES))
        yield client


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_server_serves_the_trained_model(server, predictors, data, name):
    ex = EXAMPLES[name]
    status = {m["name"]: m for m in server.get("/models").json()}[name]
    assert status["state"] == "READY", status
    assert [i["name"] for i in status["inputs"]] == ["input"]          # the label only feeds the cost
    x = data[name][0][0][:5]
    expected = predictors[name](x)[0]
    assert np.isfinite(expected).all() and np.allclose(expected.sum(axis=1), 1, atol=1e-5)   # probabilities
    r = server.post("/predict", json={"model": name, "inputs": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"][ex.output]), expected, rtol=1e-5, atol=1e-6)
    r = server.post(f"/v2/models/{name}/infer", json={"inputs": [
        {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == ex.output and out["shape"] == list(expected.shape)
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(out["shape"]), expected, rtol=1e-5,
                               atol=1e-6)


def test_smartinit_refuses_a_model_the_checkpoint_does_not_fit(runs):
    wider = dataclasses.replace(EXAMPLES["mnist"], options={"filters": 9, "hidden": 32})
    config = layers.PredictConfig(model=wider.model(), input_names=["input"], output_names=["prob"],
                                  session_init=layers.SmartInit(str(runs["mnist"])))
    with pytest.raises(ValueError, match=r"conv0/W.*\(3, 3, 1, 9\)"):
        layers.OfflinePredictor(config)

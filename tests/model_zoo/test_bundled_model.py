"""The bundled model (model_repository/digits): layout, provenance, and its held-out accuracy,
measured here with layers' OfflinePredictor + SmartInit on the fixed held-out split."""
import json

import numpy as np
import pytest

import model_zoo
from layers import OfflinePredictor, PredictConfig, SmartInit
from model_zoo import datasets as D

from .conftest import REPO_ROOT

MODEL_DIR = REPO_ROOT / "model_repository" / "digits"
VERSION_DIR = MODEL_DIR / "1"


@pytest.fixture(scope="module")
def config():
    return json.loads((MODEL_DIR / "config.json").read_text())


@pytest.fixture(scope="module")
def metrics():
    return json.loads((VERSION_DIR / "metrics.json").read_text())


@pytest.fixture(scope="module")
def zoo(config):
    return model_zoo.get(config["architecture"], **config["options"])


@pytest.fixture(scope="module")
def heldout():
    ds = D.load("digits")
    return ds.heldout_x, ds.heldout_y


@pytest.fixture(scope="module")
def pred(zoo):
    cfg = PredictConfig(model=zoo.model, input_names=zoo.input_names, output_names=["prob"],
                        session_init=SmartInit(str(VERSION_DIR / "model.npz")), intra_op_threads=2,
                        inter_op_threads=2)
    with OfflinePredictor(cfg) as p:
        yield p


def test_config_names_the_architecture_and_its_options(config):
    assert config["architecture"] == "mnist-convnet"
    assert config["options"] == {}
    assert set(config) <= {"architecture", "options", "batching", "description"}


def test_npz_is_small_and_holds_exactly_the_model_parameters(zoo):
    path = VERSION_DIR / "model.npz"
    assert path.stat().st_size <= 16 * 2**20
    with np.load(path) as npz:
        keys = sorted(npz.files)
        assert all(npz[k].dtype == np.float32 for k in keys)
    assert keys == sorted(f"{n}:0" for n in ("conv0/W", "conv0/b", "conv1/W", "conv1/b", "conv2/W", "conv2/b",
                                             "fc0/W", "fc0/b", "fc1/W", "fc1/b"))


def test_metrics_record_how_the_model_was_trained(metrics):
    assert metrics["model"] == "mnist-convnet" and metrics["dataset"] == "digits"
    assert metrics["command"].startswith("python -m model_zoo.train mnist-convnet --dataset digits ")
    assert "--seed" in metrics["command"] and metrics["seed"] == 0
    assert metrics["wall_time_s"] <= 180
    assert metrics["dataset_info"]["heldout_examples"] == 359
    assert len(metrics["history"]) == metrics["epochs"]
    assert {"tensorflow", "numpy", "python", "scikit-learn"} <= set(metrics["versions"])


def test_heldout_accuracy_is_at_least_97_percent(pred, heldout, metrics):
    x, y = heldout
    prob = pred.predict_batch({"input": x})["prob"]
    accuracy = float(np.mean(prob.argmax(axis=1) == y))
    assert accuracy >= 0.97
    # the same number the training run recorded (same graph, same weights; one image of slack for
    # kernels that sum in a different order)
    assert abs(accuracy - metrics["final"]["heldout_accuracy"]) <= 1 / len(y) + 1e-9
    assert pred.restore_report.missing == [] and pred.restore_report.unused == []


def test_preprocess_image_path_keeps_the_accuracy(zoo, pred, heldout):
    """Held-out digits sent as 56x56 RGB uint8 pictures, preprocessed by the zoo model."""
    x, y = heldout
    rgb = np.repeat(np.rint(x * 255).astype(np.uint8).repeat(2, axis=1).repeat(2, axis=2)[..., None], 3, axis=3)
    batch = np.stack([zoo.preprocess_image(im) for im in rgb])
    prob = pred.predict_batch({"input": batch})["prob"]
    assert float(np.mean(prob.argmax(axis=1) == y)) >= 0.97

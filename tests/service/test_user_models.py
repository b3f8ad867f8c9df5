"""The user's own models: a ModelDesc named by import path (weights as .npz or a TF checkpoint), a
ModelDesc shipped inside the repository (``python_path``) and a SavedModel, served by a real
``python -m service`` on 127.0.0.1 and compared with the in-process ``OfflinePredictor``; broken
entries fail at load time with a clear reason while the others keep serving."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import layers

from .realmodel import ROOT
from .server import wait_models_settled
from .test_drain import _free_port
from .user_models import mnist_desc

tfv1 = tf.compat.v1
SPEC = "tests.service.user_models.mnist_desc:Model"
OUTPUTS = ["prob", "fc1/output"]
LABELS = [f"digit {i}" for i in range(10)]
HIDDEN = 12


def _train(repo, train_log):
    """Five Adam steps (BatchNorm statistics move); the weights as .npz, and a train_log directory
    as ModelSaver leaves it (relative paths, checkpoints after steps 3 and 5) copied as a version."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int32)
    model = mnist_desc.Model(hidden=HIDDEN)
    with tf.Graph().as_default():
        tfv1.set_random_seed(0)
        image, label = model.create_placeholders()
        with layers.TowerContext("", is_training=True):
            cost = model.build_graph(image, label)
        with tf.control_dependencies(tfv1.get_collection(tfv1.GraphKeys.UPDATE_OPS)):
            step = model.get_optimizer().minimize(cost)
        saver = tfv1.train.Saver(save_relative_paths=True)
        (repo / "mine" / "1").mkdir(parents=True)
        with tfv1.Session() as sess:
            sess.run(tfv1.global_variables_initializer())
            for i in range(1, 6):
                sess.run(step, {image: x, label: y})
                if i in (3, 5):
                    saver.save(sess, str(train_log / "model"), global_step=i)
            layers.dump_model_params(sess, str(repo / "mine" / "1" / "model.npz"))
    shutil.copytree(train_log, repo / "ckpt" / "1")


def _write(repo, name, config, weights_from=None):
    (repo / name).mkdir(parents=True, exist_ok=True)
    (repo / name / "config.json").write_text(json.dumps(config))
    if weights_from is not None:
        shutil.copytree(repo / weights_from / "1", repo / name / "1")


BROKEN = {
    "nomodule": ({"architecture": "no_such_package.models:Model", "outputs": ["prob"]},
                 ["module 'no_such_package.models' is not importable", "python_path"]),
    "noattr": ({"architecture": "tests.service.user_models.mnist_desc:Missing", "outputs": ["prob"]},
               ["has no attribute 'Missing'", "ModelDesc classes it defines: ['Model']"]),
    "notdesc": ({"architecture": "tests.service.user_models.mnist_desc:helper", "outputs": ["prob"]},
                ["names a function, not a layers.ModelDesc subclass"]),
    "badoptions": ({"architecture": SPEC, "options": {"hiden": 12}, "outputs": ["prob"]},
                   ["Model(**options) with options {'hiden': 12} raised TypeError", "'hiden'"]),
    "badoutput": ({"architecture": SPEC, "options": {"hidden": HIDDEN}, "outputs": ["probs"]},
                  ["output 'probs' = 'probs' is not a tensor", "similar names: ['prob'"]),
    "badweights": ({"architecture": SPEC, "options": {"hidden": 7}, "outputs": ["prob"]},
                   ["Cannot restore from badweights/1/model.npz", "fc0/W: graph shape (64, 7)"]),
    "escapes": ({"architecture": "shipped.net:Model", "python_path": "../elsewhere", "outputs": ["prob"]},
                ["'python_path' '../elsewhere' leaves the model repository"]),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("user_repo")
    _train(repo, tmp_path_factory.mktemp("train_log"))
    user = {"outputs": OUTPUTS, "labels": LABELS, "value_ranges": {"input": [0, 1]}, "image": "gray"}
    _write(repo, "mine", {"architecture": SPEC, "options": {"hidden": HIDDEN}, **user})
    _write(repo, "ckpt", {"architecture": SPEC, "options": {"hidden": HIDDEN},
                          "outputs": {"prob": "prob:0", "logits": "fc1/output"}})
    # the same code shipped inside the repository, found through python_path
    (repo / "code" / "shipped").mkdir(parents=True)
    (repo / "code" / "shipped" / "__init__.py").write_text("")
    shutil.copy(mnist_desc.__file__, repo / "code" / "shipped" / "net.py")
    _write(repo, "shipped", {"architecture": "shipped.net:Model", "python_path": "code",
                             "options": {"hidden": HIDDEN}, "outputs": OUTPUTS}, weights_from="mine")
    layers.export_saved_model(_predict_config(repo), str(repo / "sm" / "1"))
    _write(repo, "sm", {"architecture": "saved_model", "labels": LABELS})
    for name, (config, _) in BROKEN.items():
        _write(repo, name, config, weights_from="mine")
    return repo


def _predict_config(repo):
    return layers.PredictConfig(model=mnist_desc.Model(hidden=HIDDEN), input_names=["input"],
                                output_names=OUTPUTS, session_init=str(repo / "mine" / "1" / "model.npz"))


@pytest.fixture(scope="module")
def reference(repo):
    with layers.OfflinePredictor(_predict_config(repo)) as pred:
        x = np.random.default_rng(1).uniform(0, 1, (5, 8, 8)).astype(np.float32)
        yield x, dict(zip(OUTPUTS, pred(x), strict=True)), pred


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TPSERVE_POLL_INTERVAL_S="0", TPSERVE_INTRA_OP_THREADS="1",
               TPSERVE_INTER_OP_THREADS="1", TPSERVE_BATCHING__MAX_BATCH_SIZE="8", TPSERVE_DRAIN_GRACE_S="0")
    log_path = tmp_path_factory.mktemp("user_server") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--model-repository",
                                 str(repo)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        wait_models_settled(client, proc, log_path)
        yield client
    finally:
        client.close()
        proc.kill()      # graceful shutdown is tested elsewhere (test_drain.py)
        proc.wait(30)


def _status(client):
    return {m["name"]: m for m in client.get("/models").json()}


def _v2_infer(client, name, x):
    r = client.post(f"/v2/models/{name}/infer", json={"inputs": [
        {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    return {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in r.json()["outputs"]}


@pytest.mark.parametrize("name", ["mine", "shipped", "sm"])
def test_every_protocol_returns_the_offline_predictor_outputs(server, reference, name):
    x, expected, _ = reference
    r = server.post("/predict", json={"model": name, "inputs": x.tolist()})
    assert r.status_code == 200, r.text
    by_predict = r.json()["outputs"]
    r = server.post(f"/v1/models/{name}:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    by_tfs = r.json()["predictions"]
    by_v2 = _v2_infer(server, name, x)
    for out in OUTPUTS:
        np.testing.assert_allclose(np.array(by_predict[out]), expected[out], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array([p[out] for p in by_tfs]), expected[out], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(by_v2[out], expected[out], rtol=1e-5, atol=1e-6)


def test_checkpoint_weights_and_renamed_outputs(server, reference):
    x, expected, _ = reference
    r = server.post("/predict", json={"model": "ckpt", "inputs": x.tolist(), "outputs": ["logits"]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"]["logits"]), expected["fc1/output"], rtol=1e-5, atol=1e-6)


def test_metadata_comes_from_inputs_and_the_config(server):
    status = _status(server)
    mine = status["mine"]
    assert mine["state"] == "READY" and mine["architecture"] == SPEC and mine["options"] == {"hidden": HIDDEN}
    # 'label' is an input of the ModelDesc, but prob does not depend on it: not served
    assert mine["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 8, 8], "range": [0.0, 1.0]}]
    assert [(o["name"], o["dtype"], o["shape"]) for o in mine["outputs"]] == [
        ("prob", "float32", [-1, 10]), ("fc1/output", "float32", [-1, 10])]
    assert mine["labels"] == LABELS
    sm = status["sm"]
    assert sm["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 8, 8]}]
    assert sorted(o["name"] for o in sm["outputs"]) == sorted(OUTPUTS)
    meta = server.get("/v2/models/sm").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8]}]


def test_image_upload_uses_the_configured_gray_transform(server, reference):
    _, _, pred = reference
    pixels = np.random.default_rng(2).integers(0, 256, (8, 8)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    r = server.post("/predict?model=mine&top_k=1", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    prob = pred(pixels[None].astype(np.float32) / 255.0)[0][0]
    best = r.json()["top_k"][0]
    assert best["label"] == LABELS[int(np.argmax(prob))]
    assert best["score"] == pytest.approx(float(prob.max()), rel=1e-4)


def test_a_model_without_image_config_refuses_uploads(server):
    r = server.post("/predict?model=shipped", content=b"\x89PNG\r\n\x1a\n", headers={"content-type": "image/png"})
    assert r.status_code == 400 and "does not take images" in r.json()["error"], r.text


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_entry_fails_at_load_with_a_clear_reason(server, repo, name):
    entry = _status(server)[name]
    assert entry["state"] == "FAILED"
    for text in BROKEN[name][1]:
        assert text in entry["error"], entry["error"]
    assert str(repo) not in entry["error"]      # paths are relative to the repository
    ready = server.get("/readyz")
    assert ready.status_code == 503 and any(repr(name) in reason for reason in ready.json()["reasons"])
    assert server.post("/predict", json={"model": name, "inputs": [[[0.0] * 8] * 8]}).status_code == 503


def test_tfserving_classify_names_the_configured_labels(server, reference):
    x, expected, _ = reference
    r = server.post("/v1/models/sm:classify", json={"instances": x.tolist(), "top_k": 1})
    assert r.status_code == 200, r.text
    best = [row[0][0] for row in r.json()["results"]]
    assert best == [LABELS[i] for i in np.argmax(expected["prob"], axis=1)]

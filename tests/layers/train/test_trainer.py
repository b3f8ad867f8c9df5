"""SimpleTrainer through ``launch_train_with_config``, written the way tensorpack's MNIST example is:
FeedInput, ModelSaver, InferenceRunner with ScalarStats + ClassificationError, MaxSaver. One
training run (module fixture) is checked from several sides: stats.json, event files, log,
checkpoints restored strictly through SmartInit."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from layers import (
    ClassificationError,
    EstimatedTimeLeft,
    FeedInput,
    InferenceRunner,
    MaxSaver,
    ModelSaver,
    OfflinePredictor,
    PredictConfig,
    ScalarStats,
    SimpleTrainer,
    SmartInit,
    TrainConfig,
    launch_train_with_config,
    load_checkpoint_vars,
)
from layers.utils import logger

from .conftest import MLP, dataflow, make_data, reset_logger, session_config

STEPS, EPOCHS, BATCH = 6, 4, 32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("simple") / "train_log"
    logger.set_logger_dir(str(d), action="d")
    x, y = make_data(STEPS * BATCH + 100)
    train, (vx, vy) = dataflow(x[:STEPS * BATCH], y[:STEPS * BATCH], BATCH), (x[-100:], y[-100:])
    tf.compat.v1.set_random_seed(0)
    try:
        config = TrainConfig(
            model=MLP(),
            data=FeedInput(train),
            callbacks=[
                ModelSaver(),
                InferenceRunner(dataflow(vx, vy, 32, remainder=True),      # 4 batches: 32, 32, 32, 4
                                [ScalarStats(["cross_entropy_loss", "accuracy"], prefix="val"),
                                 ClassificationError("wrong_vector", "val_error")]),
                MaxSaver("val_accuracy"),
                EstimatedTimeLeft(),
            ],
            session_config=session_config(), max_epoch=EPOCHS)
        launch_train_with_config(config, SimpleTrainer())
    finally:
        reset_logger()
    return d, vx, vy


def _stats(d):
    with open(d / "stats.json") as f:
        return json.load(f)


def test_stats_json_is_a_list_of_per_epoch_dicts_with_tensorpack_keys(run):
    stats = _stats(run[0])
    assert [s["epoch_num"] for s in stats] == [1, 2, 3, 4]
    assert [s["global_step"] for s in stats] == [6, 12, 18, 24]
    expected = {"cross_entropy_loss", "accuracy", "lr", "val_cross_entropy_loss", "val_accuracy", "val_error",
                "param-summary/fc0/W-rms", "param-summary/fc1/W-rms", "epoch_num", "global_step"}
    assert all(set(s) == expected for s in stats), [sorted(s) for s in stats]
    assert stats[0]["lr"] == pytest.approx(0.2)


def test_training_loss_falls(run):
    stats = _stats(run[0])
    assert stats[-1]["cross_entropy_loss"] < 0.8 * stats[0]["cross_entropy_loss"]
    assert stats[-1]["val_cross_entropy_loss"] < stats[0]["val_cross_entropy_loss"]


def test_checkpoints_are_written_every_epoch_with_tensorpack_names(run):
    d = run[0]
    assert sorted(os.path.basename(p) for p in glob.glob(str(d / "model-*.index"))) == \
        ["model-12.index", "model-18.index", "model-24.index", "model-6.index"]
    assert tf.train.latest_checkpoint(str(d)).endswith("model-24")
    assert glob.glob(str(d / "graph-*.meta"))
    names = set(load_checkpoint_vars(str(d / "model-24")))
    assert {"fc0/W", "fc0/b", "fc1/W", "fc1/b", "learning_rate", "global_step"} <= names
    assert not [n for n in names if n.startswith("EMA/")]      # moving summaries are local, not saved


def test_checkpoint_restores_strictly_and_reproduces_the_validation_stats(run):
    d, vx, vy = run
    pred = OfflinePredictor(PredictConfig(model=MLP(), input_names=["input"], output_names=["logits"],
                                          session_init=SmartInit(str(d / "checkpoint")), session_config=session_config()))
    with pred:
        logits = pred(vx)[0]
    # Independent reference: the forward pass in NumPy from the checkpoint's arrays.
    w = load_checkpoint_vars(str(d / "model-24"))
    ref = np.maximum(vx @ w["fc0/W"] + w["fc0/b"], 0) @ w["fc1/W"] + w["fc1/b"]
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    # ClassificationError is the exact error over all 100 examples (not a mean of batch means).
    final = _stats(d)[-1]
    assert final["val_error"] == pytest.approx(np.mean(np.argmax(ref, 1) != vy), abs=1e-7)
    assert final["val_accuracy"] == pytest.approx(np.mean([np.mean(np.argmax(ref[i:i + 32], 1) == vy[i:i + 32])
                                                           for i in range(0, 100, 32)]), abs=1e-6)


def test_max_saver_copy_is_the_checkpoint_of_the_best_epoch(run):
    d = run[0]
    stats = _stats(d)
    best = max(stats, key=lambda s: s["val_accuracy"])      # first maximum: MaxSaver keeps the earlier on ties
    best_values = load_checkpoint_vars(str(d / "max-val_accuracy"))
    same = load_checkpoint_vars(str(d / f"model-{best['global_step']}"))
    assert best_values.keys() == same.keys()
    for k in same:
        np.testing.assert_array_equal(best_values[k], same[k])


def test_event_file_has_scalar_and_histogram_tags(run):
    ea = EventAccumulator(str(run[0]), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    tags = ea.Tags()
    # tags as in stats.json: "-summary" suffixes and tower prefixes are removed before writing
    assert {"cross_entropy_loss", "accuracy", "lr", "val_accuracy", "val_error"} <= set(tags["scalars"])
    assert "param-summary/fc0/W-histogram" in tags["histograms"]
    assert [e.step for e in ea.Scalars("val_error")] == [6, 12, 18, 24]
    assert tags["graph"]


def test_log_file_has_the_epoch_summary_and_time_estimate(run):
    text = (run[0] / "log.log").read_text()
    assert "Epoch 4 (global_step 24) finished" in text
    assert "val_accuracy: " in text and "cross_entropy_loss: " in text
    assert "Estimated Time Left" in text
    assert "Training has finished!" in text


def test_training_without_a_logger_directory_writes_nothing_and_still_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert logger.get_logger_dir() is None
    x, y = make_data(32)
    losses = []
    from layers import ProcessTensors
    launch_train_with_config(TrainConfig(model=MLP(), dataflow=dataflow(x, y, 8), session_config=session_config(),
                                         callbacks=[ProcessTensors(["cross_entropy_loss"], losses.append)],
                                         max_epoch=3), SimpleTrainer())
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert list(tmp_path.iterdir()) == []           # TFEventWriter/JSONWriter became no-ops
    with pytest.raises(ValueError, match="ModelSaver: no checkpoint_dir"):
        launch_train_with_config(TrainConfig(model=MLP(), dataflow=dataflow(x, y, 8), callbacks=[ModelSaver()],
                                             session_config=session_config(), max_epoch=1), SimpleTrainer())


def test_launch_inside_a_graph_builds_there_as_cifar_convnet_does(logdir):
    x, y = make_data(16)
    g = tf.Graph()
    with g.as_default():
        launch_train_with_config(TrainConfig(model=MLP(), dataflow=dataflow(x, y, 8), session_config=session_config(),
                                             max_epoch=1), SimpleTrainer())
    assert {"fc0/W", "global_step", "learning_rate"} <= {v.op.name for v in g.get_collection("variables")}
    assert tf.executing_eagerly()


def test_build_graph_must_return_the_cost_when_training(logdir):
    class NoCost(MLP):
        def build_graph(self, x, label):
            super().build_graph(x, label)
    x, y = make_data(16)
    with pytest.raises(ValueError, match=r"build_graph must return the total cost \(a scalar tensor\)"):
        launch_train_with_config(TrainConfig(model=NoCost(), dataflow=dataflow(x, y, 8), max_epoch=1), SimpleTrainer())


def test_inference_runner_says_when_the_dataflow_is_shorter_than_its_len(logdir):
    from layers import DataFlow

    class Liar(DataFlow):
        def __iter__(self):
            yield from dataflow(*make_data(16), 8)

        def __len__(self):
            return 3
    x, y = make_data(16)
    with pytest.raises(RuntimeError, match=r"input ended before reaching its size\(\) \(3\)"):
        launch_train_with_config(TrainConfig(model=MLP(), dataflow=dataflow(x, y, 8), session_config=session_config(),
                                             callbacks=[InferenceRunner(Liar(), ScalarStats("cost"))], max_epoch=1),
                                 SimpleTrainer())

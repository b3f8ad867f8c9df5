"""Callbacks in real (tiny) training runs: hyperparameter setters read back from the graph at
each epoch, MinSaver/MaxSaver on a controlled statistic, StopTraining, PeriodicTrigger, and the
BatchNorm update ops run every step by RunUpdateOps."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    Callback,
    HyperParamSetterWithFunc,
    MaxSaver,
    MergeAllSummaries,
    MinSaver,
    ModelSaver,
    MovingAverageSummary,
    PeriodicTrigger,
    ProgressBar,
    ScheduledHyperParamSetter,
    SimpleTrainer,
    StatMonitorParamSetter,
    StopTraining,
    TrainConfig,
    launch_train_with_config,
    load_checkpoint_vars,
)

from .conftest import MLP, dataflow, make_data, session_config

tfv1 = tf.compat.v1
STEPS, BATCH = 2, 8


def train(callbacks, max_epoch=3, model=None, **kwargs):
    x, y = make_data(STEPS * BATCH)
    config = TrainConfig(model=model or MLP(), dataflow=dataflow(x, y, BATCH), callbacks=callbacks,
                         session_config=session_config(), max_epoch=max_epoch, **kwargs)
    launch_train_with_config(config, SimpleTrainer())
    return x, y


class RecordLR(Callback):
    """The ``learning_rate`` variable's value read from the session before and after each epoch's triggers."""

    def __init__(self):
        self.before, self.after, self.trained = {}, {}, False

    def _setup_graph(self):
        self._var = next(v for v in tfv1.global_variables() if v.op.name == "learning_rate")

    def _before_epoch(self):
        self.before[self.epoch_num] = float(self.trainer.sess.run(self._var))

    def _trigger_epoch(self):
        self.after[self.epoch_num] = float(self.trainer.sess.run(self._var))

    def _after_train(self):
        self.trained = True


class PutStat(Callback):
    """Put ``values[epoch - 1]`` as stat ``name`` after each epoch."""

    def __init__(self, name, values):
        self._name, self._values = name, values

    def _trigger_epoch(self):
        self.trainer.monitors.put_scalar(self._name, self._values[self.epoch_num - 1])


def _approx(d):
    return {k: pytest.approx(v, rel=1e-6) for k, v in d.items()}


def test_scheduled_setter_sets_each_value_after_its_epoch(logdir):
    rec = RecordLR()
    train([ScheduledHyperParamSetter("learning_rate", [(0, 0.3), (2, 0.1), (3, 0.05)]), rec], max_epoch=4)
    assert rec.before == _approx({1: 0.3, 2: 0.3, 3: 0.1, 4: 0.05})


def test_scheduled_setter_interpolates_linearly_between_points(logdir):
    rec = RecordLR()
    train([ScheduledHyperParamSetter("learning_rate", [(1, 0.4), (3, 0.2)], interp="linear"), rec], max_epoch=4)
    # epoch 1 runs with the model's initial 0.2; 0.4 after epoch 1, 0.3 after epoch 2 (interpolated).
    assert rec.before == _approx({1: 0.2, 2: 0.4, 3: 0.3, 4: 0.2})


def test_setter_with_func_gets_the_finished_epoch_and_old_value(logdir):
    rec = RecordLR()
    train([HyperParamSetterWithFunc("learning_rate", lambda e, x: x * 0.5 if e % 2 == 0 else x), rec], max_epoch=4)
    # before training e = 0 (halve), then after epochs 1 (keep), 2 (halve), 3 (keep)
    assert rec.before == _approx({1: 0.1, 2: 0.1, 3: 0.05, 4: 0.05})


def test_stat_monitor_setter_decays_when_the_stat_stops_improving(logdir):
    rec = RecordLR()
    train([PutStat("fake_error", [1.0, 0.5, 0.6, 0.55, 0.7]),
           StatMonitorParamSetter("learning_rate", "fake_error", lambda lr: lr * 0.1, threshold=0, last_k=2),
           rec], max_epoch=5)
    # last 2 values: (1.0, 0.5) improving; (0.5, 0.6) not -> x0.1, history restarts; (0.55, 0.7) not -> x0.1
    assert rec.after == _approx({1: 0.2, 2: 0.2, 3: 0.02, 4: 0.02, 5: 0.002})


def test_stop_training_from_a_value_func_ends_training_cleanly(logdir):
    rec = RecordLR()

    def lr_func(lr):         # as tensorpack's cifar-convnet example
        raise StopTraining()
    train([PutStat("fake_error", [1.0, 1.0, 1.0, 1.0]),
           StatMonitorParamSetter("learning_rate", "fake_error", lr_func, threshold=0, last_k=2), rec],
          max_epoch=4)
    stats = json.loads((logdir / "stats.json").read_text())
    # Stopped inside epoch 2's triggers, before the monitors (last in the list) wrote epoch 2: as in tensorpack.
    assert [s["epoch_num"] for s in stats] == [1]
    assert sorted(rec.before) == [1, 2] and rec.trained
    assert "Training was stopped by exception StopTraining" in (logdir / "log.log").read_text()


def test_trainer_stop_training_ends_after_the_current_step(logdir):
    class StopAt3(Callback):
        def _trigger_step(self):
            if self.global_step == 3:
                self.trainer.stop_training()
    rec = RecordLR()
    train([StopAt3(), ModelSaver(), rec], max_epoch=5)
    assert rec.trained
    assert sorted(rec.before) == [1, 2]
    assert os.path.exists(logdir / "model-2.index") and not glob.glob(str(logdir / "model-[3-9]*"))


def test_min_and_max_saver_copy_the_checkpoint_of_the_extreme_epoch(logdir):
    train([ModelSaver(), PutStat("score", [0.5, 0.9, 0.2]), MaxSaver("score"), MinSaver("score")], max_epoch=3)
    ckpt = {e: load_checkpoint_vars(str(logdir / f"model-{e * STEPS}")) for e in (1, 2, 3)}
    best, worst = load_checkpoint_vars(str(logdir / "max-score")), load_checkpoint_vars(str(logdir / "min-score"))
    assert not np.array_equal(ckpt[2]["fc0/W"], ckpt[3]["fc0/W"])
    for k in ckpt[2]:
        np.testing.assert_array_equal(best[k], ckpt[2][k])
        np.testing.assert_array_equal(worst[k], ckpt[3][k])


def test_periodic_trigger_saves_every_second_epoch(logdir):
    train([PeriodicTrigger(ModelSaver(), every_k_epochs=2)], max_epoch=4)
    assert sorted(os.path.basename(p) for p in glob.glob(str(logdir / "model-*.index"))) == \
        ["model-4.index", "model-8.index"]


@pytest.mark.parametrize("with_update_ops", [True, False])
def test_batchnorm_statistics_follow_one_step_only_with_run_update_ops(logdir, with_update_ops):
    extra = None if with_update_ops else [MovingAverageSummary(), ProgressBar(), MergeAllSummaries()]
    x, _ = train([ModelSaver()], max_epoch=1, model=MLP(use_bn=True), steps_per_epoch=1, extra_callbacks=extra)
    saved = load_checkpoint_vars(str(logdir / "model-1"))
    batch = x[:BATCH].astype(np.float64)
    if with_update_ops:       # EMA with momentum 0.9 from (0, 1), biased batch variance for 2D input
        np.testing.assert_allclose(saved["bn/mean/EMA"], 0.1 * batch.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(saved["bn/variance/EMA"], 0.9 + 0.1 * batch.var(0), rtol=1e-5)
    else:
        np.testing.assert_array_equal(saved["bn/mean/EMA"], 0)
        np.testing.assert_array_equal(saved["bn/variance/EMA"], 1)


def test_max_saver_works_with_a_relative_logger_directory(tmp_path, monkeypatch):
    from layers.utils import logger

    from .conftest import reset_logger
    monkeypatch.chdir(tmp_path)
    logger.set_logger_dir("train_log/rel")       # as logger.auto_set_dir() does
    try:
        train([ModelSaver(), PutStat("score", [0.5, 0.9]), MaxSaver("score")], max_epoch=2)
    finally:
        reset_logger()
    d = tmp_path / "train_log" / "rel"
    best = load_checkpoint_vars(str(d / "max-score"))
    np.testing.assert_array_equal(best["fc0/W"], load_checkpoint_vars(str(d / "model-4"))["fc0/W"])


def test_simple_moving_average_is_the_mean_of_the_last_window_steps(logdir):
    from layers import ProcessTensors
    from layers.callbacks import SimpleMovingAverage
    losses = []
    train([ProcessTensors(["cross_entropy_loss"], losses.append), SimpleMovingAverage(["cross_entropy_loss"], 2)],
          max_epoch=2)
    stats = json.loads((logdir / "stats.json").read_text())
    # written at global steps 2 and 4 (the end of each epoch): mean of steps (1, 2) and (3, 4)
    assert [s["cross_entropy_loss/SMA"] for s in stats] == pytest.approx([np.mean(losses[0:2]), np.mean(losses[2:4])],
                                                                         rel=1e-6)


def test_hook_to_callback_runs_a_session_run_hook_and_step_timeouts_pass_through(logdir):
    from layers.callbacks import HookToCallback, SessionRunTimeout
    calls = []

    class Hook(tfv1.train.SessionRunHook):
        def begin(self):
            calls.append("begin")

        def after_create_session(self, session, coord):
            calls.append("created")

        def before_run(self, run_context):
            calls.append("before")
            return tfv1.train.SessionRunArgs(tfv1.train.get_global_step())

        def after_run(self, run_context, run_values):
            calls.append(int(run_values.results))

        def end(self, session):
            calls.append("end")
    train([HookToCallback(Hook()), SessionRunTimeout(60_000)], max_epoch=1)
    assert calls[:3] == ["begin", "created", "before"] and calls[-1] == "end"
    assert len(calls) == 2 + 2 * STEPS + 1 and calls[4] == "before"
    # fetched in the same run as its increment, so before or after it: step k reads k - 1 or k
    assert calls[3] in (0, 1) and calls[5] in (1, 2)


def test_trainer_get_predictor_runs_the_inference_tower_in_the_training_session(logdir):
    probe = np.random.default_rng(3).normal(size=(5, 8)).astype(np.float32)
    seen = []

    class Predict(Callback):
        def _setup_graph(self):
            self._pred = self.trainer.get_predictor(["input"], ["logits"])
            self._vars = {v.op.name: v for v in tfv1.global_variables()}

        def _trigger_epoch(self):
            w = self.trainer.sess.run({k: self._vars[k] for k in ("fc0/W", "fc0/b", "fc1/W", "fc1/b")})
            seen.append((self._pred(probe)[0],
                         np.maximum(probe @ w["fc0/W"] + w["fc0/b"], 0) @ w["fc1/W"] + w["fc1/b"]))
    train([Predict()], max_epoch=2)
    assert len(seen) == 2 and not np.allclose(seen[0][0], seen[1][0])     # follows the training
    for got, ref in seen:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)

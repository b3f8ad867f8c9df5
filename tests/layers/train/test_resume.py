"""Resuming from ``train_log/<dir>``: AutoResumeTrainConfig restores the newest checkpoint and
continues at the next epoch and the saved global step; TrainConfig argument checks."""
import json

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    AutoResumeTrainConfig,
    Callback,
    DataFromGenerator,
    ModelSaver,
    ScheduledHyperParamSetter,
    SimpleTrainer,
    TrainConfig,
    launch_train_with_config,
    load_checkpoint_vars,
)

from .conftest import MLP, dataflow, make_data, session_config

tfv1 = tf.compat.v1
SCHEDULE = [(1, 0.1), (3, 0.05)]


class Record(Callback):
    def __init__(self):
        self.lr, self.start = {}, None

    def _setup_graph(self):
        self._vars = {v.op.name: v for v in tfv1.global_variables()}

    def _before_train(self):
        self.start = self.trainer.sess.run({k: self._vars[k] for k in ("fc0/W", "global_step")})
        self.start["epoch"] = self.epoch_num + 1

    def _before_epoch(self):
        self.lr[self.epoch_num] = float(self.trainer.sess.run(self._vars["learning_rate"]))


def _kwargs(callbacks, max_epoch):
    x, y = make_data(16)
    return dict(model=MLP(), dataflow=dataflow(x, y, 8), session_config=session_config(), max_epoch=max_epoch,
                callbacks=[ModelSaver(), ScheduledHyperParamSetter("learning_rate", SCHEDULE), *callbacks])


def test_auto_resume_continues_from_the_saved_step_epoch_and_weights(logdir):
    first = AutoResumeTrainConfig(**_kwargs([], max_epoch=2))      # nothing to resume yet
    assert first.starting_epoch == 1 and first.session_init is None
    launch_train_with_config(first, SimpleTrainer())
    saved = load_checkpoint_vars(str(logdir / "model-4"))

    rec = Record()
    second = AutoResumeTrainConfig(**_kwargs([rec], max_epoch=4))
    assert second.starting_epoch == 3
    launch_train_with_config(second, SimpleTrainer())

    assert rec.start["epoch"] == 3 and rec.start["global_step"] == 4
    np.testing.assert_array_equal(rec.start["fc0/W"], saved["fc0/W"])
    assert rec.lr == {3: pytest.approx(0.1), 4: pytest.approx(0.05)}    # restored 0.1; 0.05 after epoch 3
    stats = json.loads((logdir / "stats.json").read_text())
    assert [(s["epoch_num"], s["global_step"]) for s in stats] == [(1, 2), (2, 4), (3, 6), (4, 8)]
    assert (logdir / "model-8.index").exists()


def test_given_starting_epoch_wins_without_always_resume(logdir):
    launch_train_with_config(AutoResumeTrainConfig(**_kwargs([], max_epoch=1)), SimpleTrainer())
    cfg = AutoResumeTrainConfig(always_resume=False, starting_epoch=5, **_kwargs([], max_epoch=5))
    assert cfg.starting_epoch == 5
    assert cfg.session_init is not None         # not given, so the checkpoint is still used


def test_train_config_checks_its_arguments():
    x, y = make_data(16)
    df = dataflow(x, y, 8)
    with pytest.raises(ValueError, match="dataflow and data cannot be both given"):
        from layers import FeedInput
        TrainConfig(model=MLP(), dataflow=df, data=FeedInput(df))
    with pytest.raises(TypeError, match="dataflow has to be a DataFlow"):
        TrainConfig(model=MLP(), dataflow=[1, 2])
    with pytest.raises(TypeError, match="model has to be ModelDescBase"):
        TrainConfig(model=object(), dataflow=df)
    with pytest.raises(ValueError, match="set steps_per_epoch"):
        TrainConfig(model=MLP(), dataflow=DataFromGenerator(lambda: iter([])))
    assert TrainConfig(model=MLP(), dataflow=df).steps_per_epoch == 2      # len(dataflow)

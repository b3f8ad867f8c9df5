"""Data-parallel trainers on 2 logical CPU devices against SimpleTrainer at the same global batch.

The single tower takes batches of 16; each of the 2 towers dequeues its own batch of 8 from a
DataFlow that yields the same examples in the same order, so step k of both sees the same 16
examples. With a mean loss, averaging the 2 towers' gradients is the gradient of the 16-example
mean, so both runs follow the same trajectory. They are not bit-identical: the single tower
reduces 16 terms at once, the towers 8 + 8 and then average, so float32 rounding differs by a few
ulp per step. Measured over these 8 momentum steps: losses agree to 1.4e-7 relative, weights to
4e-6 relative (the worst being entries near zero). The tolerance, rtol 1e-5 (atol 1e-6 for
weights), leaves room for other CPUs' summation orders; a real difference in the algorithm
(summing instead of averaging, a tower reading stale weights, a lost batch) moves the loss by percents.
"""
import numpy as np
import pytest
import tensorflow as tf

from layers import (
    ModelSaver,
    ProcessTensors,
    QueueInput,
    SimpleTrainer,
    SmartInit,
    SyncMultiGPUTrainerParameterServer,
    SyncMultiGPUTrainerReplicated,
    TrainConfig,
    launch_train_with_config,
    load_checkpoint_vars,
)
from layers.callbacks import Callback

from .conftest import MLP, dataflow, make_data, session_config

tfv1 = tf.compat.v1
STEPS, EPOCHS, GLOBAL_BATCH = 4, 2, 16
RTOL = 1e-5
_rng = np.random.default_rng(5)
INITIAL = {"fc0/W": _rng.normal(0, 0.5, (8, 16)), "fc0/b": np.zeros(16), "fc1/W": _rng.normal(0, 0.5, (16, 3)),
           "fc1/b": np.zeros(3)}


def _run(logdir, trainer, towers, extra=(), optimizer="momentum"):
    x, y = make_data(STEPS * GLOBAL_BATCH)
    losses = []
    names = ["cost"] if towers == 1 else [f"tower{k}/cost" for k in range(towers)]
    config = TrainConfig(
        session_init=SmartInit(INITIAL),       # both runs start from the same weights
        model=MLP(lr=0.1 if optimizer == "momentum" else 0.01, optimizer=optimizer), data=QueueInput(dataflow(x, y, GLOBAL_BATCH // towers)),
        callbacks=[ModelSaver(), ProcessTensors(names, lambda *c: losses.append(float(np.mean(c)))), *extra],
        session_config=session_config(n_cpus=2), steps_per_epoch=STEPS, max_epoch=EPOCHS)
    launch_train_with_config(config, trainer)
    return losses, load_checkpoint_vars(str(logdir / f"model-{STEPS * EPOCHS}"))


def _single(tmp_path_factory, optimizer):
    from layers.utils import logger

    from .conftest import reset_logger
    d = tmp_path_factory.mktemp("single") / "log"
    logger.set_logger_dir(str(d), action="d")
    try:
        return _run(d, SimpleTrainer(), 1, optimizer=optimizer)
    finally:
        reset_logger()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _single(tmp_path_factory, "momentum")


@pytest.fixture(scope="module")
def single_adam(tmp_path_factory):
    return _single(tmp_path_factory, "adam")


def _compare(single, multi):
    (l1, w1), (l2, w2) = single, multi
    assert len(l1) == len(l2) == STEPS * EPOCHS
    assert l1[-1] < 0.7 * l1[0]                        # it trains at all
    np.testing.assert_allclose(l2, l1, rtol=RTOL)
    for name in ("fc0/W", "fc0/b", "fc1/W", "fc1/b"):
        np.testing.assert_allclose(w2[name], w1[name], rtol=RTOL, atol=1e-6)


def test_parameter_server_follows_the_single_tower_trajectory(single, logdir):
    trainer = SyncMultiGPUTrainerParameterServer(2, devices=["/cpu:0", "/cpu:1"])
    multi = _run(logdir, trainer, 2)
    _compare(single, multi)
    assert [t.ns_name for t in trainer.towers.training()] == ["tower0", "tower1"]
    assert not [k for k in multi[1] if k.startswith("tower")]


class _ReplicasEqual(Callback):
    """After every step (before any re-broadcast), tower1's copies equal the main variables."""

    def _setup_graph(self):
        main = {v.op.name: v for v in tfv1.global_variables()}
        self._pairs = [(main[v.op.name[len("tower1/"):]], v) for v in tfv1.local_variables()
                       if v.op.name.startswith("tower1/") and v in tfv1.trainable_variables()]
        self.checked = 0

    def _trigger_step(self):
        assert len(self._pairs) == 4
        for a, b in self.trainer.sess.run(self._pairs):
            np.testing.assert_array_equal(a, b)
        self.checked += 1


def test_replicated_follows_the_single_tower_trajectory_and_saves_plain_names(single, logdir):
    check = _ReplicasEqual()
    multi = _run(logdir, SyncMultiGPUTrainerReplicated(2, devices=["/cpu:0", "/cpu:1"]), 2, extra=[check])
    _compare(single, multi)
    assert check.checked == STEPS * EPOCHS
    # the per-tower copies and their optimizer slots are LOCAL variables: not in the checkpoint
    assert not [k for k in multi[1] if k.startswith("tower")]
    assert {"fc0/W", "fc0/W/Momentum", "learning_rate", "global_step"} <= set(multi[1])


def test_replicated_with_adam_keeps_one_bias_correction_per_replica(single_adam, logdir):
    # Adam's beta1_power/beta2_power are optimizer state outside the slots: each replica needs its
    # own, advanced once per step, or the replicas' updates (and so their weights) drift apart.
    check = _ReplicasEqual()
    multi = _run(logdir, SyncMultiGPUTrainerReplicated(2, devices=["/cpu:0", "/cpu:1"]), 2, extra=[check],
                 optimizer="adam")
    _compare(single_adam, multi)
    assert check.checked == STEPS * EPOCHS
    # one beta1_power in the checkpoint (the replica's is local), advanced once per step
    assert [k for k in multi[1] if "beta1_power" in k] == ["apply_gradients/beta1_power"]
    np.testing.assert_allclose(multi[1]["apply_gradients/beta1_power"], 0.9 ** (STEPS * EPOCHS + 1), rtol=1e-6)
    assert not [k for k in multi[1] if k.startswith("tower")]


def test_data_parallel_trainers_refuse_a_feed_input(logdir):
    from layers import FeedInput
    x, y = make_data(16)
    config = TrainConfig(model=MLP(), data=FeedInput(dataflow(x, y, 8)), session_config=session_config(2),
                         steps_per_epoch=1, max_epoch=1)
    with pytest.raises(TypeError, match="needs a feed-free input"):
        launch_train_with_config(config, SyncMultiGPUTrainerParameterServer(2, devices=["/cpu:0", "/cpu:1"]))


def test_resumed_replicated_adam_syncs_the_restored_optimizer_state_into_the_replicas(logdir):
    from layers import AutoResumeTrainConfig
    x, y = make_data(STEPS * GLOBAL_BATCH)

    def config(cls, **kw):
        return cls(model=MLP(lr=0.01, optimizer="adam"), data=QueueInput(dataflow(x, y, GLOBAL_BATCH // 2)),
                   session_config=session_config(n_cpus=2), steps_per_epoch=STEPS, **kw)
    launch_train_with_config(config(TrainConfig, callbacks=[ModelSaver()], max_epoch=1),
                             SyncMultiGPUTrainerReplicated(2, devices=["/cpu:0", "/cpu:1"]))
    check = _ReplicasEqual()
    resumed = config(AutoResumeTrainConfig, callbacks=[ModelSaver(), check], max_epoch=2)
    assert resumed.starting_epoch == 2
    # a fresh replica's beta1_power would be 0.9 while the restored one is 0.9 ** 5: its first update
    # would then differ from tower 0's and the per-step equality check would fail
    launch_train_with_config(resumed, SyncMultiGPUTrainerReplicated(2, devices=["/cpu:0", "/cpu:1"]))
    assert check.checked == STEPS
    saved = load_checkpoint_vars(str(logdir / f"model-{2 * STEPS}"))
    np.testing.assert_allclose(saved["apply_gradients/beta1_power"], 0.9 ** (2 * STEPS + 1), rtol=1e-6)

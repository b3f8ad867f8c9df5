"""A worker's exception reaches the trainer: training over a MultiProcessRunnerZMQ whose dataflow fails
stops with DataFlowWorkerError, through FeedInput and through TrainConfig(dataflow=) (QueueInput)."""
import numpy as np
import pytest
import tensorflow as tf

from layers import (
    BatchData,
    DataFromGenerator,
    FeedInput,
    FullyConnected,
    ModelDesc,
    MultiProcessRunnerZMQ,
    SimpleTrainer,
    TrainConfig,
    launch_train_with_config,
)
from layers.dataflow import DataFlowWorkerError

tfv1 = tf.compat.v1


class _Linear(ModelDesc):
    def inputs(self):
        return [tf.TensorSpec((None, 2), tf.float32, "x")]

    def build_graph(self, x):
        return tf.reduce_mean(tf.square(FullyConnected("fc", x, 1)), name="cost")

    def optimizer(self):
        return tfv1.train.GradientDescentOptimizer(0.1)


def _three_records_then_corrupt():
    for k in range(3):
        yield [np.full(2, k, np.float32)]
    raise ValueError("corrupt record 3")


@pytest.mark.parametrize("source", ["FeedInput", "TrainConfig(dataflow=)"])
def test_a_worker_exception_stops_training_with_the_worker_error(source):
    ds = MultiProcessRunnerZMQ(BatchData(DataFromGenerator(_three_records_then_corrupt), 1), 1)
    data = {"data": FeedInput(ds)} if source == "FeedInput" else {"dataflow": ds}
    config = TrainConfig(model=_Linear(), steps_per_epoch=10, max_epoch=1, callbacks=[],
                         session_config=tfv1.ConfigProto(intra_op_parallelism_threads=2,
                                                         inter_op_parallelism_threads=2), **data)
    try:
        with pytest.raises(DataFlowWorkerError, match="raised ValueError: corrupt record 3"):
            launch_train_with_config(config, SimpleTrainer())
    finally:
        ds.close()

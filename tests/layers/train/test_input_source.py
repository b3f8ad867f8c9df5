"""Input sources: QueueInput (prefetch thread, queue-size stat, clean shutdown, errors reaching
the trainer), DummyConstantInput, FeedInput checks."""
import json
import threading

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    DataFlow,
    DummyConstantInput,
    FeedInput,
    QueueInput,
    SimpleTrainer,
    TrainConfig,
    launch_train_with_config,
)

from .conftest import MLP, N_FEATURES, dataflow, make_data, session_config


def _train(data, steps=3, epochs=2, **kwargs):
    launch_train_with_config(TrainConfig(model=MLP(), data=data, session_config=session_config(),
                                         steps_per_epoch=steps, max_epoch=epochs, **kwargs), SimpleTrainer())


def test_queue_input_reports_queue_size_and_its_thread_ends(logdir):
    x, y = make_data(64)
    q = QueueInput(dataflow(x, y, 8))
    _train(q)
    stats = json.loads((logdir / "stats.json").read_text())
    sizes = [s["QueueInput/queue_size"] for s in stats]
    assert len(sizes) == 2 and all(0 <= v <= 50 for v in sizes)
    assert not q.thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("EnqueueThread")]
    assert q.error is None


class _FailingDataFlow(DataFlow):
    """Yields 2 good batches, then raises."""

    def __iter__(self):
        x, y = make_data(8)
        for _ in range(2):
            yield [x, y]
        raise OSError("disk gone")


def test_an_exception_in_the_dataflow_stops_training_and_reaches_the_caller(logdir):
    q = QueueInput(_FailingDataFlow())
    with pytest.raises(RuntimeError, match="input pipeline failed: OSError: disk gone") as info:
        _train(q, steps=5)
    assert isinstance(info.value.__cause__, OSError)
    assert not q.thread.is_alive()


def test_dummy_constant_input_feeds_zeros_of_the_given_shapes(logdir):
    seen = []

    class Probe(MLP):
        def build_graph(self, x, label):
            seen.append((x.shape.as_list(), label.shape.as_list(), tf.get_static_value(x), tf.get_static_value(label)))
            return super().build_graph(x, label)
    launch_train_with_config(TrainConfig(model=Probe(), data=DummyConstantInput([[4, N_FEATURES], [4]]),
                                         session_config=session_config(), steps_per_epoch=2, max_epoch=1),
                             SimpleTrainer())
    [(xshape, lshape, xval, lval)] = seen
    assert (xshape, lshape) == ([4, N_FEATURES], [4])
    np.testing.assert_array_equal(xval, np.zeros((4, N_FEATURES), np.float32))
    np.testing.assert_array_equal(lval, np.zeros(4, np.int32))
    assert json.loads((logdir / "stats.json").read_text())[0]["global_step"] == 2


def test_feed_input_rejects_datapoints_of_the_wrong_arity(logdir):
    x, _ = make_data(8)

    class OneComponent(DataFlow):
        def __iter__(self):
            yield [x]

        def __len__(self):
            return 1
    with pytest.raises(ValueError, match=r"1 components but the model has 2 inputs \(\['input', 'label'\]\)"):
        _train(FeedInput(OneComponent()), steps=1, epochs=1)


def test_queue_and_feed_input_refuse_objects_that_are_not_dataflows():
    with pytest.raises(TypeError, match="QueueInput takes a DataFlow"):
        QueueInput([np.zeros(3)])
    with pytest.raises(TypeError, match="FeedInput takes a DataFlow"):
        FeedInput(tf.zeros(3))

"""Fixtures for the trainer tests: a fresh logger directory per test, tiny generated data, tiny models.

Models are small MLPs on a 3-class problem with 8 features, a few steps each, so the whole folder
runs in seconds. Sessions use 2 threads (the CI machine has 2 busy cores).
"""
import numpy as np
import pytest
import tensorflow as tf

from layers import BatchData, BatchNorm, DataFromList, FullyConnected, ModelDesc, regularize_cost
from layers.tfutils import summary
from layers.utils import logger

tfv1 = tf.compat.v1
N_FEATURES, N_CLASSES = 8, 3


def session_config(n_cpus=1):
    """2 threads; ``n_cpus`` logical CPU devices (``/cpu:0`` ... ``/cpu:<n-1>``) for multi-tower tests."""
    cfg = tfv1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2,
                           allow_soft_placement=False)
    cfg.device_count["CPU"] = n_cpus
    return cfg


def make_data(n, seed=0):
    """``n`` points, labels from a fixed random linear map (learnable by an MLP in a few steps)."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(123).normal(size=(N_FEATURES, N_CLASSES))
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    return x, np.argmax(x @ w, axis=1).astype(np.int32)


def dataflow(x, y, batch_size, remainder=False):
    """tensorpack's ``BatchData(DataFromList(...))`` in a fixed order."""
    return BatchData(DataFromList([[a, b] for a, b in zip(x, y, strict=True)], shuffle=False), batch_size,
                     remainder=remainder)


class MLP(ModelDesc):
    """input (N, 8) float32, label (N,) int32 -> fc0 (16, relu) -> [bn] -> fc1 (3 logits).

    Named tensors: ``logits``, ``cross_entropy_loss``, ``accuracy``, ``wrong_vector``, ``cost``.
    The learning rate is the non-trainable variable ``learning_rate`` (summarised as ``lr``).
    """

    def __init__(self, lr=0.2, use_bn=False, optimizer="sgd", wd=1e-4):
        self.lr, self.use_bn, self.opt_name, self.wd = lr, use_bn, optimizer, wd

    def inputs(self):
        return [tf.TensorSpec((None, N_FEATURES), tf.float32, "input"), tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, x, label):
        if self.use_bn:
            x = BatchNorm("bn", x)
        h = FullyConnected("fc0", x, 16, activation=tf.nn.relu)
        logits = tf.identity(FullyConnected("fc1", h, N_CLASSES), name="logits")
        xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label),
                              name="cross_entropy_loss")
        correct = tf.cast(tf.nn.in_top_k(predictions=logits, targets=label, k=1), tf.float32, name="correct")
        accuracy = tf.reduce_mean(correct, name="accuracy")
        tf.subtract(1.0, correct, name="wrong_vector")
        wd = tf.multiply(self.wd, regularize_cost("fc.*/W", tf.nn.l2_loss), name="regularize_loss")
        summary.add_moving_summary(xent, accuracy)
        summary.add_param_summary((".*/W", ["histogram", "rms"]))
        return tf.add_n([xent, wd], name="cost")

    def optimizer(self):
        lr = tfv1.get_variable("learning_rate", initializer=float(self.lr), trainable=False)
        tfv1.summary.scalar("lr", lr)
        if self.opt_name == "momentum":
            return tfv1.train.MomentumOptimizer(lr, 0.9)
        if self.opt_name == "adam":
            return tfv1.train.AdamOptimizer(lr)
        return tfv1.train.GradientDescentOptimizer(lr)


def reset_logger():
    """Forget the logger directory and close its log file (the logger is process-global, as in tensorpack)."""
    if logger._FILE_HANDLER is not None:
        logger._logger.removeHandler(logger._FILE_HANDLER)
        logger._FILE_HANDLER.close()
        logger._FILE_HANDLER = None
    logger.LOG_DIR = None


@pytest.fixture
def logdir(tmp_path):
    """``logger.set_logger_dir(<tmp>/train_log)``; reset afterwards."""
    d = tmp_path / "train_log"
    logger.set_logger_dir(str(d), action="d")
    yield d
    reset_logger()

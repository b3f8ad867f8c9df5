"""End to end: a conv + BatchNorm + FC model trains on scikit-learn's 8x8 digits with a tf.compat.v1
optimizer, L2 regularisation and the BatchNorm UPDATE_OPS, and a reused inference tower (EMA statistics)
classifies the held-out 20% with > 90% accuracy."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from layers import (
    BatchNorm,
    Conv2D,
    FullyConnected,
    MaxPooling,
    PredictTowerContext,
    TowerContext,
    l2_regularizer,
    regularize_cost,
)

tfv1 = tf.compat.v1


def _model(image):
    net = Conv2D("conv0", image, 16, 3, use_bias=False)              # (N, 8, 8, 16)
    net = tf.nn.relu(BatchNorm("bn0", net))
    net = MaxPooling("pool0", net, 2)                                 # (N, 4, 4, 16)
    return FullyConnected("fc", net, 10)                              # logits (N, 10)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    return train_test_split(x, y.astype(np.int64), test_size=0.2, random_state=0, stratify=y)


def test_model_trains_on_digits_and_inference_tower_generalises(graph, make_session, digits):
    x_train, x_test, y_train, y_test = digits
    tfv1.set_random_seed(0)
    image = tfv1.placeholder(tf.float32, [None, 8, 8, 1], name="input")
    label = tfv1.placeholder(tf.int64, [None], name="label")

    with TowerContext("", is_training=True):
        logits = _model(image)
        xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logits))
        cost = tf.add(xent, regularize_cost(".*/W", l2_regularizer(1e-4)), name="total_cost")
    update_ops = tfv1.get_collection(tfv1.GraphKeys.UPDATE_OPS)
    assert len(update_ops) == 2
    with tf.control_dependencies(update_ops):
        train_op = tfv1.train.MomentumOptimizer(0.1, 0.9).minimize(cost)

    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True), PredictTowerContext("pred"):
        pred_logits = _model(image)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(pred_logits, 1), label), tf.float32))

    sess = make_session()
    ema_before = sess.run(tfv1.get_collection(tfv1.GraphKeys.MODEL_VARIABLES))
    order = np.random.default_rng(0)
    losses = []
    for _ in range(300):
        idx = order.choice(len(x_train), 64, replace=False)
        losses.append(sess.run([train_op, xent], {image: x_train[idx], label: y_train[idx]})[1])
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    ema_after = sess.run(tfv1.get_collection(tfv1.GraphKeys.MODEL_VARIABLES))
    assert not np.allclose(ema_before[0], ema_after[0])               # BatchNorm moving mean followed the data
    assert sess.run(accuracy, {image: x_test, label: y_test}) > 0.9

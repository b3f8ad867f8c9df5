"""A small tensorpack-style ModelDesc, written the way a user's training script would define it
(the service imports it as ``tests.service.user_models.mnist_desc:Model``).

Layers: conv0 3x3x4 relu -> pool0 2x2 -> bn -> fc0 ``hidden`` relu -> fc1 10 -> prob (softmax).
``build_graph`` always builds the training cost too, as tensorpack's examples do, so the ``label``
input exists but serving ``prob`` does not need it.
"""
import tensorflow as tf

from layers import BatchNorm, Conv2D, FullyConnected, MaxPooling, ModelDesc

__all__ = ["Model", "IMAGE_SIZE", "helper"]

IMAGE_SIZE = 8


class Model(ModelDesc):
    def __init__(self, hidden=16):
        self.hidden = hidden

    def inputs(self):
        return [tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE), tf.float32, "input"),
                tf.TensorSpec((None,), tf.int32, "label")]

    def build_graph(self, image, label):
        x = tf.expand_dims(image, 3) * 2 - 1                      # (N, 8, 8, 1)
        x = Conv2D("conv0", x, 4, 3, activation=tf.nn.relu)       # (N, 8, 8, 4)
        x = MaxPooling("pool0", x, 2)                             # (N, 4, 4, 4)
        x = BatchNorm("bn", x)
        x = FullyConnected("fc0", x, self.hidden, activation=tf.nn.relu)
        logits = FullyConnected("fc1", x, 10)                     # (N, 10)
        tf.nn.softmax(logits, name="prob")
        cost = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        return tf.reduce_mean(cost, name="cost")

    def optimizer(self):
        return tf.compat.v1.train.AdamOptimizer(1e-2)


def helper():
    """Not a ModelDesc: naming it as an architecture is refused."""
    return Model()

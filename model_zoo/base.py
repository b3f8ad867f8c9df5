"""``ClassifierModel``: the ModelDesc every zoo classifier derives from.

It fixes the conventions of tensorpack's example classifiers:

* inputs ``input`` (architecture-specific dtype and shape) and ``label`` (int32 ``[None]``);
* ``build_graph(image, label)`` calls :meth:`ClassifierModel.get_logits` and names the softmax
  (``prob``, or ``output`` for the CIFAR ResNet, as in tensorpack);
* in a *training* tower it also builds ``cross_entropy_loss``, ``accuracy`` (of the batch),
  ``wd_cost`` (``weight_decay * sum(l2_loss(W))`` over ``weight_decay_pattern``, through
  :func:`layers.regularize_cost`) and returns the total ``cost``; in an inference tower the label
  is not used and nothing but the inference outputs is built;
* :meth:`optimizer` uses a non-trainable ``learning_rate`` variable, so a training loop can
  change it with ``tf.compat.v1.assign``.
"""
from __future__ import annotations

import tensorflow as tf

from layers import ModelDesc, regularize_cost

__all__ = ["ClassifierModel"]

tfv1 = tf.compat.v1


class ClassifierModel(ModelDesc):
    """Base class; subclasses set the class attributes and implement :meth:`get_logits`.

    Attributes:
        input_dtype: tf dtype of ``input``.
        input_shape: shape of one example (no batch dimension).
        prob_name: name of the softmax tensor.
        weight_decay: L2 factor (0 disables it); weight_decay_pattern: regex on variable names.
        learning_rate: initial value of the ``learning_rate`` variable (override before building).
        optimizer_kind: ``'adam'`` or ``'momentum'`` (momentum 0.9; ``use_nesterov`` as tensorpack's
            ImageNet models, plain for the CIFAR ResNet).
    """

    input_dtype = tf.float32
    input_shape: tuple[int, ...] = ()
    prob_name = "prob"
    weight_decay = 1e-4
    weight_decay_pattern = ".*/W"
    learning_rate = 0.1
    optimizer_kind = "momentum"
    use_nesterov = True

    def inputs(self):
        return [tf.TensorSpec((None, *self.input_shape), self.input_dtype, "input"),
                tf.TensorSpec((None,), tf.int32, "label")]

    def get_logits(self, image):
        """``image``: the ``input`` tensor. Returns [N, num_classes] logits."""
        raise NotImplementedError

    def build_graph(self, image, label):
        logits = self.get_logits(image)                        # (N, classes)
        tf.nn.softmax(logits, name=self.prob_name)
        if not self.training:
            return None
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        loss = tf.reduce_mean(loss, name="cross_entropy_loss")
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), label), tf.float32)
        tf.reduce_mean(correct, name="accuracy")
        if self.weight_decay > 0:
            wd_cost = tf.multiply(self.weight_decay, regularize_cost(self.weight_decay_pattern, tf.nn.l2_loss),
                                  name="wd_cost")
            return tf.add_n([loss, wd_cost], name="cost")
        return tf.identity(loss, name="cost")

    def optimizer(self):
        lr = tfv1.get_variable("learning_rate", initializer=float(self.learning_rate), trainable=False)
        tfv1.summary.scalar("learning_rate-summary", lr)
        if self.optimizer_kind == "adam":
            return tfv1.train.AdamOptimizer(lr)
        if self.optimizer_kind == "momentum":
            return tfv1.train.MomentumOptimizer(lr, 0.9, use_nesterov=self.use_nesterov)
        raise ValueError(f"{type(self).__name__}: unknown optimizer_kind {self.optimizer_kind!r}; "
                         "valid choices: 'adam', 'momentum'")

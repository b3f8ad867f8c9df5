#!/usr/bin/env python
"""A small convolutional network for MNIST, trained the tensorpack way.

This is what a tensorpack 0.11 user's MNIST script looks like on tpserve: the usual ``ModelDesc``
(inputs, graph, optimizer), a batched ``dataset.Mnist`` dataflow, and a ``TrainConfig`` with a
checkpointing callback, a validation pass after each epoch and a best-model saver, trained by
``SimpleTrainer``. Only the import lines name ``layers`` instead of ``tensorpack``.

The default architecture is four 3x3 convolutions of 32 filters with two max-poolings, a
512-unit hidden layer with dropout and a 10-way linear classifier; tensorpack reports about 0.6%
test error after 30 epochs on the real MNIST files for this network (not measured here: the files
are not available offline).

    python -m examples.mnist_convnet --data ~/mnist_data    # the four idx files from the MNIST site
    python -m examples.mnist_convnet --fake --max-epoch 3   # generated stand-in (see fake_data.py)

Everything lands in ``train_log/mnist_convnet/`` (or ``--logdir``): ``checkpoint`` and
``model-<step>`` files, ``max-val_accuracy`` (the best model), ``stats.json``, the TensorBoard
event file and ``log.log``. The server can serve the model from that directory: see
``examples/README.md``.
"""
import argparse

from layers import *
from layers import tfv1 as tf
from layers.dataflow import dataset
from layers.tfutils import summary

try:
    from . import fake_data
except ImportError:         # run as a plain script: python examples/mnist_convnet.py
    import fake_data

__all__ = ["Model", "get_data", "get_config", "main"]

IMAGE_SIZE = 28
# 60000 / 128: one MNIST epoch, in steps; the learning rate decays every 10 such epochs
STEPS_PER_MNIST_EPOCH = 468


class Model(ModelDesc):
    """``input`` (N, 28, 28) float32 in [0, 1], ``label`` (N,) int32 -> ``prob`` (N, 10).

    Args:
        filters: channels of each of the four convolutions (32).
        hidden: width of the fully-connected layer ``fc0`` (512).
    """

    def __init__(self, filters=32, hidden=512):
        super().__init__()
        self.filters = filters
        self.hidden = hidden

    def inputs(self):
        # names matter: the trainer feeds, and the server serves, tensors by these names
        return [tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE), tf.float32, 'input'),
                tf.TensorSpec((None,), tf.int32, 'label')]

    def build_graph(self, image, label):
        x = tf.expand_dims(image, 3) * 2 - 1        # (N, 28, 28, 1) in [-1, 1]
        with argscope(Conv2D, kernel_size=3, activation=tf.nn.relu, filters=self.filters):
            logits = (LinearWrap(x)
                      .Conv2D('conv0')               # (N, 26, 26, F): 'valid' padding by default
                      .MaxPooling('pool0', 2)        # (N, 13, 13, F)
                      .Conv2D('conv1')
                      .Conv2D('conv2')               # (N, 9, 9, F)
                      .MaxPooling('pool1', 2)        # (N, 4, 4, F)
                      .Conv2D('conv3')               # (N, 2, 2, F)
                      .FullyConnected('fc0', self.hidden, activation=tf.nn.relu)
                      .Dropout('dropout', rate=0.5)  # only while training: the tower context decides
                      .FullyConnected('fc1', 10, activation=tf.identity)())
        tf.nn.softmax(logits, name='prob')          # what the server hands out

        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        xent = tf.reduce_mean(xent, name='cross_entropy_loss')
        correct = tf.cast(tf.nn.in_top_k(predictions=logits, targets=label, k=1), tf.float32, name='correct')
        accuracy = tf.reduce_mean(correct, name='accuracy')
        train_error = tf.reduce_mean(1 - correct, name='train_error')

        # L2 on the fully-connected weights only; the regex is matched against variable names
        wd_cost = tf.multiply(1e-5, regularize_cost('fc.*/W', tf.nn.l2_loss), name='regularize_loss')
        total_cost = tf.add_n([wd_cost, xent], name='total_cost')

        # moving averages of these scalars go to TensorBoard, stats.json and the epoch printout
        summary.add_moving_summary(train_error, accuracy, xent, wd_cost, total_cost)
        summary.add_param_summary(('.*/W', ['histogram', 'rms']))
        return total_cost

    def optimizer(self):
        lr = tf.train.exponential_decay(learning_rate=1e-3, global_step=get_global_step_var(),
                                        decay_steps=STEPS_PER_MNIST_EPOCH * 10, decay_rate=0.3,
                                        staircase=True, name='learning_rate')
        tf.summary.scalar('lr', lr)                 # a plain summary: recorded without averaging
        return tf.train.AdamOptimizer(lr)


def get_data(data_dir=None, batch=128):
    """The training and test dataflows: batches of ``[images, labels]`` read from ``data_dir``
    (default ``$TENSORPACK_DATASET/mnist_data``); the test set keeps its last partial batch."""
    train = BatchData(dataset.Mnist('train', dir=data_dir), batch)
    test = BatchData(dataset.Mnist('test', dir=data_dir), 256, remainder=True)
    return PrintData(train), test      # PrintData shows the first training batch's shapes once


def get_config(args):
    data_dir = fake_data.write_mnist(fake_data.temporary_dir()) if args.fake else args.data
    train, test = get_data(data_dir, args.batch)
    return TrainConfig(
        model=Model(filters=args.filters, hidden=args.hidden),
        data=FeedInput(train),      # feed_dict input: simple; QueueInput would overlap data and compute
        callbacks=[
            ModelSaver(),           # a checkpoint after every epoch
            InferenceRunner(test, ScalarStats(['cross_entropy_loss', 'accuracy'], prefix='val')),
            MaxSaver('val_accuracy'),    # after InferenceRunner, whose stat it reads
        ],
        steps_per_epoch=args.steps_per_epoch or len(train),
        max_epoch=args.max_epoch,
        session_init=SmartInit(args.load),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', help='directory holding the MNIST idx files '
                                       '(default: $TENSORPACK_DATASET/mnist_data)')
    parser.add_argument('--fake', action='store_true',
                        help="train on scikit-learn's digits written as MNIST files to a temporary directory")
    parser.add_argument('--logdir', help='where checkpoints and stats go (default: train_log/mnist_convnet)')
    parser.add_argument('--load', help='checkpoint or .npz to start from')
    parser.add_argument('--max-epoch', type=int, default=100)
    parser.add_argument('--steps-per-epoch', type=int, help='default: one pass over the training set')
    parser.add_argument('--batch', type=int, default=128, help='training batch size')
    parser.add_argument('--filters', type=int, default=32, help='channels of every convolution')
    parser.add_argument('--hidden', type=int, default=512, help='units of the fc0 layer')
    args = parser.parse_args(argv)

    if args.logdir:
        logger.set_logger_dir(args.logdir)
    else:
        logger.auto_set_dir()
    launch_train_with_config(get_config(args), SimpleTrainer())


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""A small BatchNorm convnet for CIFAR-10 or CIFAR-100, trained the tensorpack way.

The pieces a tensorpack user's CIFAR script is made of, running on tpserve's ``layers``:
augmentation (``imgaug`` random crops, flips, brightness, contrast and per-image normalisation)
in worker processes (``MultiProcessRunnerZMQ``), a prefetching ``QueueInput``, a dropout rate
that is a tensor, a learning rate held in a variable that ``StatMonitorParamSetter`` lowers when
the validation accuracy stops improving (training stops once it is tiny), and
``SyncMultiGPUTrainerParameterServer`` when there are several GPUs.

The default network has six 3x3 convolutions (64, 64, 128, 128, 128, 128 filters, each followed
by BatchNorm + ReLU) in three stages separated by max-pooling, then two hidden fully-connected
layers (1536 and 512 units) and the classifier. tensorpack reports about 91% test accuracy after
50k steps on the real CIFAR-10 files for this network (not measured here).

    python -m examples.cifar_convnet --data ~/cifar10_data          # holds cifar-10-batches-py/
    python -m examples.cifar_convnet --classnum 100 --data ~/cifar100_data
    python -m examples.cifar_convnet --fake --max-epoch 3           # generated images

Output in ``train_log/cifar<classnum>/`` (or ``--logdir``), as for the MNIST example.
"""
import argparse
import os

from layers import *
from layers import tfv1 as tf
from layers.dataflow import dataset
from layers.tfutils.summary import *
from layers.utils.gpu import get_num_gpu

try:
    from . import fake_data
except ImportError:         # run as a plain script: python examples/cifar_convnet.py
    import fake_data

__all__ = ["Model", "get_data", "get_config", "main"]

CROP = 30       # the network sees 30x30 crops of the 32x32 images


class Model(ModelDesc):
    """``input`` (N, 30, 30, 3) float32 (normalised per image), ``label`` (N,) int32 ->
    ``prob`` (N, classnum).

    Args:
        cifar_classnum: 10 or 100 outputs.
        filters: width of the first stage (64); the later stages have twice as many filters and
            the hidden layers 24x and 8x as many units (1536 and 512 by default).
    """

    def __init__(self, cifar_classnum=10, filters=64):
        super().__init__()
        self.cifar_classnum = cifar_classnum
        self.filters = filters

    def inputs(self):
        return [tf.TensorSpec((None, CROP, CROP, 3), tf.float32, 'input'),
                tf.TensorSpec((None,), tf.int32, 'label')]

    def build_graph(self, image, label):
        # a tensor, not a Python float: the same graph code serves training and inference towers
        drop_rate = tf.constant(0.5 if self.training else 0.0)
        if self.training:
            tf.summary.image('train_image', image, 10)

        # GPUs prefer channels-first; on CPU tpserve runs either, channels-last is cheaper
        if get_num_gpu() > 0:
            image = tf.transpose(image, [0, 3, 1, 2])
            data_format = 'channels_first'
        else:
            data_format = 'channels_last'

        f = self.filters
        image = image / 4.0          # the normalised pixels have unit variance; a smaller range trains better
        with argscope(Conv2D, activation=BNReLU, use_bias=False, kernel_size=3), \
                argscope([Conv2D, MaxPooling, BatchNorm], data_format=data_format):
            logits = (LinearWrap(image)
                      .Conv2D('conv1.1', filters=f)
                      .Conv2D('conv1.2', filters=f)                           # (N, 30, 30, f)
                      .MaxPooling('pool1', 3, stride=2, padding='SAME')       # (N, 15, 15, f)
                      .Conv2D('conv2.1', filters=2 * f)
                      .Conv2D('conv2.2', filters=2 * f)
                      .MaxPooling('pool2', 3, stride=2, padding='SAME')       # (N, 8, 8, 2f)
                      .Conv2D('conv3.1', filters=2 * f, padding='VALID')      # (N, 6, 6, 2f)
                      .Conv2D('conv3.2', filters=2 * f, padding='VALID')      # (N, 4, 4, 2f)
                      .FullyConnected('fc0', 24 * f, activation=tf.nn.relu)
                      .Dropout(rate=drop_rate)
                      .FullyConnected('fc1', 8 * f, activation=tf.nn.relu)
                      .FullyConnected('linear', out_dim=self.cifar_classnum)())
        tf.nn.softmax(logits, name='prob')

        cost = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        cost = tf.reduce_mean(cost, name='cross_entropy_loss')
        correct = tf.cast(tf.nn.in_top_k(predictions=logits, targets=label, k=1), tf.float32, name='correct')
        add_moving_summary(tf.reduce_mean(correct, name='accuracy'))

        wd_cost = regularize_cost('fc.*/W', l2_regularizer(4e-4), name='regularize_loss')
        add_moving_summary(cost, wd_cost)
        add_param_summary(('.*/W', ['histogram']))
        return tf.add_n([cost, wd_cost], name='cost')

    def optimizer(self):
        # a non-trainable variable, so callbacks can change it between epochs
        lr = tf.get_variable('learning_rate', initializer=1e-2, trainable=False)
        tf.summary.scalar('lr', lr)
        return tf.train.AdamOptimizer(lr, epsilon=1e-3)


def get_data(train_or_test, cifar_classnum=10, data_dir=None, batch=128, workers=5):
    """Batches of ``[images, labels]``: random augmentation for ``'train'`` (in ``workers``
    processes), a centre crop for ``'test'`` (which keeps its last partial batch)."""
    is_train = train_or_test == 'train'
    cifar = dataset.Cifar10 if cifar_classnum == 10 else dataset.Cifar100
    ds = cifar(train_or_test, dir=data_dir)
    if is_train:
        augmentors = [
            imgaug.RandomCrop((CROP, CROP)),
            imgaug.Flip(horiz=True),
            imgaug.Brightness(63),
            imgaug.Contrast((0.2, 1.8)),
            imgaug.MeanVarianceNormalize(all_channel=True),
        ]
    else:
        augmentors = [
            imgaug.CenterCrop((CROP, CROP)),
            imgaug.MeanVarianceNormalize(all_channel=True),
        ]
    ds = AugmentImageComponent(ds, augmentors)
    ds = BatchData(ds, batch, remainder=not is_train)
    if is_train:
        ds = MultiProcessRunnerZMQ(ds, workers)
    return ds


def get_config(args):
    data_dir = args.data
    if args.fake:
        data_dir = fake_data.write_cifar(fake_data.temporary_dir(), classnum=args.classnum)
    dataset_train = get_data('train', args.classnum, data_dir, args.batch, args.workers)
    dataset_test = get_data('test', args.classnum, data_dir, args.batch)

    def lr_func(lr):
        # called when validation_accuracy has not risen by 0.001 in the last 10 epochs
        if lr < 3e-5:
            raise StopTraining()
        return lr * 0.31

    return TrainConfig(
        model=Model(args.classnum, filters=args.filters),
        data=QueueInput(dataset_train),
        callbacks=[
            ModelSaver(),
            InferenceRunner(dataset_test, ScalarStats(['accuracy', 'cost'])),   # validation_accuracy, validation_cost
            StatMonitorParamSetter('learning_rate', 'validation_accuracy', lr_func,
                                   threshold=0.001, last_k=10, reverse=True),
        ],
        steps_per_epoch=args.steps_per_epoch,     # None: one pass over the training set
        max_epoch=args.max_epoch,
        session_init=SmartInit(args.load),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--gpu', help='comma-separated GPU ids to use (sets CUDA_VISIBLE_DEVICES)')
    parser.add_argument('--load', help='checkpoint or .npz to start from')
    parser.add_argument('--classnum', type=int, default=10, choices=(10, 100), help='CIFAR-10 or CIFAR-100')
    parser.add_argument('--data', help='directory holding cifar-10-batches-py/ or cifar-100-python/ (or the '
                                       'tarball); default: $TENSORPACK_DATASET/cifar<classnum>_data')
    parser.add_argument('--fake', action='store_true', help='train on generated images (see fake_data.py)')
    parser.add_argument('--logdir', help='where checkpoints and stats go (default: train_log/cifar<classnum>)')
    parser.add_argument('--max-epoch', type=int, default=150)
    parser.add_argument('--steps-per-epoch', type=int, help='default: one pass over the training set')
    parser.add_argument('--batch', type=int, default=128, help='batch size (per GPU)')
    parser.add_argument('--workers', type=int, default=5, help='augmentation worker processes')
    parser.add_argument('--filters', type=int, default=64, help='width of the first stage')
    args = parser.parse_args(argv)

    if args.gpu:
        os.environ['CUDA_VISIBLE_DEVICES'] = args.gpu

    with tf.Graph().as_default():
        logger.set_logger_dir(args.logdir or os.path.join('train_log', f'cifar{args.classnum}'))
        config = get_config(args)
        num_gpu = get_num_gpu()
        trainer = SimpleTrainer() if num_gpu <= 1 else SyncMultiGPUTrainerParameterServer(num_gpu)
        launch_train_with_config(config, trainer)


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""A pre-activation ResNet for CIFAR-10, trained with data-parallel towers the tensorpack way.

The network of "Identity Mappings in Deep Residual Networks" (He et al. 2016) for 32x32 images:
a 3x3 convolution, three stages of ``n`` residual units (16, 32 and 64 filters; each unit is
BN-ReLU-conv-BN-ReLU-conv plus the identity; the first unit of stages 2 and 3 halves the
resolution and doubles the channels, its shortcut average-pooled and zero-padded), global average
pooling and a linear classifier: ``6n + 2`` layers, ResNet-32 with the default ``n = 5``.

Training follows the paper's CIFAR recipe: random 32x32 crops of the image padded to 40x40,
horizontal flips, per-pixel mean subtraction; momentum SGD with learning rate 0.1, divided by 10
at epochs 32 and 48 (of 1000 steps), 64 epochs, weight decay 2e-4 on every weight. The global
batch is 64 per tower, split over ``--num-gpu`` towers by ``SyncMultiGPUTrainerParameterServer``
(``--trainer replicated``: ``SyncMultiGPUTrainerReplicated``). Without GPUs the towers share the
CPU, which is slower than one tower but trains the same model.

    python -m examples.cifar10_resnet --data ~/cifar10_data --num-gpu 2
    python -m examples.cifar10_resnet --fake -n 1 --max-epoch 3 --steps-per-epoch 20

Output in ``train_log/cifar10_resnet/`` (or ``--logdir``); the served probabilities are ``output``.
"""
import argparse
import os

from layers import *
from layers import tfv1 as tf
from layers.dataflow import dataset
from layers.tfutils.summary import add_moving_summary, add_param_summary
from layers.utils.gpu import get_num_gpu

try:
    from . import fake_data
except ImportError:         # run as a plain script: python examples/cifar10_resnet.py
    import fake_data

__all__ = ["Model", "get_data", "main"]

BATCH_SIZE = 64     # per tower; the paper's 128 is two towers


class Model(ModelDesc):
    """``input`` (N, 32, 32, 3) float32 (per-pixel mean subtracted), ``label`` (N,) int32 ->
    ``output`` (N, 10) class probabilities.

    Args:
        n: residual units per stage (5: ResNet-32; 18: ResNet-110).
        filters: channels of the first stage (16); the second and third have 2x and 4x as many.
    """

    def __init__(self, n=5, filters=16):
        super().__init__()
        self.n = n
        self.filters = filters

    def inputs(self):
        return [tf.TensorSpec([None, 32, 32, 3], tf.float32, 'input'),
                tf.TensorSpec([None], tf.int32, 'label')]

    def build_graph(self, image, label):
        image = image / 128.0
        if get_num_gpu() > 0:         # the layout cuDNN is fastest with; the weights are the same either way
            image = tf.transpose(image, [0, 3, 1, 2])
            data_format = 'channels_first'
        else:
            data_format = 'channels_last'
        channel_axis = 1 if data_format == 'channels_first' else 3

        def unit(name, x, downsample=False, first=False):
            in_channel = x.get_shape().as_list()[channel_axis]
            out_channel = in_channel * 2 if downsample else in_channel
            with tf.variable_scope(name):
                # the very first unit follows conv0, which already ends in BN-ReLU
                pre = x if first else BNReLU(x)
                y = Conv2D('conv1', pre, out_channel, strides=2 if downsample else 1, activation=BNReLU)
                y = Conv2D('conv2', y, out_channel)
                if downsample:
                    # parameter-free shortcut: halve the resolution, pad the new channels with zeros
                    x = AvgPooling('pool', x, 2)
                    padding = [[0, 0]] * 4
                    padding[channel_axis] = [in_channel // 2, in_channel // 2]
                    x = tf.pad(x, padding)
                return y + x

        init = tf.variance_scaling_initializer(scale=2.0, mode='fan_out')
        with argscope([Conv2D, AvgPooling, BatchNorm, GlobalAvgPooling], data_format=data_format), \
                argscope(Conv2D, use_bias=False, kernel_size=3, kernel_initializer=init):
            x = Conv2D('conv0', image, self.filters, activation=BNReLU)      # (N, 32, 32, f)
            for stage in (1, 2, 3):                  # 32x32 f, 16x16 2f, 8x8 4f
                for k in range(self.n):
                    x = unit(f'res{stage}.{k}', x, downsample=stage > 1 and k == 0, first=stage == 1 and k == 0)
            x = BNReLU('bnlast', x)
            x = GlobalAvgPooling('gap', x)           # (N, 4f)

        logits = FullyConnected('linear', x, 10)
        tf.nn.softmax(logits, name='output')

        cost = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label)
        cost = tf.reduce_mean(cost, name='cross_entropy_loss')
        # 1 for each misclassified image: ClassificationError averages it over the validation set
        wrong = tf.cast(tf.logical_not(tf.nn.in_top_k(logits, label, 1)), tf.float32, name='wrong_vector')
        add_moving_summary(tf.reduce_mean(wrong, name='train_error'))

        # weight decay on every weight, itself decaying (by 0.2 every 480k steps: hardly, in practice)
        wd_w = tf.train.exponential_decay(0.0002, get_global_step_var(), 480000, 0.2, True)
        wd_cost = tf.multiply(wd_w, regularize_cost('.*/W', tf.nn.l2_loss), name='wd_cost')
        add_moving_summary(cost, wd_cost)
        add_param_summary(('.*/W', ['histogram']))
        return tf.add_n([cost, wd_cost], name='cost')

    def optimizer(self):
        lr = tf.get_variable('learning_rate', initializer=0.01, trainable=False)
        return tf.train.MomentumOptimizer(lr, 0.9)


def get_data(train_or_test, data_dir=None, batch=BATCH_SIZE, workers=2):
    """Batches of ``[images, labels]`` with the training set's per-pixel mean subtracted; the
    training set is padded, randomly cropped and flipped in ``workers`` processes."""
    is_train = train_or_test == 'train'
    ds = dataset.Cifar10(train_or_test, dir=data_dir)
    pp_mean = ds.get_per_pixel_mean(('train',))       # (32, 32, 3)
    augmentors = [imgaug.MapImage(lambda img: img - pp_mean)]
    if is_train:
        augmentors = [imgaug.CenterPaste((40, 40)), imgaug.RandomCrop((32, 32)), imgaug.Flip(horiz=True)] + augmentors
    ds = AugmentImageComponent(ds, augmentors)
    ds = BatchData(ds, batch, remainder=not is_train)
    if is_train:
        ds = MultiProcessRunner(ds, 3, workers)        # 3 batches buffered
    return ds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--gpu', help='comma-separated GPU ids to use (sets CUDA_VISIBLE_DEVICES)')
    parser.add_argument('-n', '--num-units', type=int, default=5, help='residual units in each stage')
    parser.add_argument('--filters', type=int, default=16, help='channels of the first stage')
    parser.add_argument('--load', help='checkpoint or .npz to start from')
    parser.add_argument('--logdir', help='log directory (default: train_log/cifar10_resnet)')
    parser.add_argument('--data', help='directory holding cifar-10-batches-py/ (or the tarball); '
                                       'default: $TENSORPACK_DATASET/cifar10_data')
    parser.add_argument('--fake', action='store_true', help='train on generated images (see fake_data.py)')
    parser.add_argument('--max-epoch', type=int, default=64)
    parser.add_argument('--steps-per-epoch', type=int, default=1000)
    parser.add_argument('--batch', type=int, default=BATCH_SIZE, help='batch size per tower')
    parser.add_argument('--workers', type=int, default=2, help='augmentation worker processes')
    parser.add_argument('--num-gpu', type=int, help='training towers (default: the number of GPUs, at least 1)')
    parser.add_argument('--trainer', choices=('ps', 'replicated'), default='ps',
                        help='ps: SyncMultiGPUTrainerParameterServer (one copy of the variables); replicated: '
                             'SyncMultiGPUTrainerReplicated (a copy per tower)')
    args = parser.parse_args(argv)

    if args.gpu:
        os.environ['CUDA_VISIBLE_DEVICES'] = args.gpu
    if args.logdir:
        logger.set_logger_dir(args.logdir)
    else:
        logger.auto_set_dir()

    data_dir = fake_data.write_cifar(fake_data.temporary_dir(), classnum=10) if args.fake else args.data
    dataset_train = get_data('train', data_dir, args.batch, args.workers)
    dataset_test = get_data('test', data_dir, args.batch)

    config = TrainConfig(
        model=Model(n=args.num_units, filters=args.filters),
        dataflow=dataset_train,          # the multi-tower trainers wrap it in a QueueInput
        callbacks=[
            ModelSaver(),
            InferenceRunner(dataset_test, [ScalarStats('cost'), ClassificationError('wrong_vector')]),
            # (epoch, value): from the start of that epoch on
            ScheduledHyperParamSetter('learning_rate', [(1, 0.1), (32, 0.01), (48, 0.001)]),
        ],
        steps_per_epoch=args.steps_per_epoch,
        max_epoch=args.max_epoch,
        session_init=SmartInit(args.load),
    )
    num_gpu = args.num_gpu or max(get_num_gpu(), 1)
    trainer = SyncMultiGPUTrainerReplicated if args.trainer == 'replicated' else SyncMultiGPUTrainerParameterServer
    launch_train_with_config(config, trainer(num_gpu))


if __name__ == '__main__':
    main()

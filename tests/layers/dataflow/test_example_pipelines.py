"""The input pipelines of tensorpack's MNIST, CIFAR convnet and CIFAR ResNet examples, composed from the
names ``from layers import *`` gives (as the scripts use them after their import lines change), on tiny
generated dataset files, with worker processes and lambdas as in the scripts."""
import numpy as np

import layers

from .writers import write_cifar10, write_idx_images, write_idx_labels


def _first_batch(ds):
    ds.reset_state()
    try:
        return next(iter(ds))
    finally:
        if hasattr(ds, "close"):
            ds.close()


def test_mnist_pipeline_batches_and_prints(tmp_path, capsys):
    write_idx_images(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((6, 28, 28)))
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte.gz", [1, 2, 3, 4, 5, 6])
    ds = layers.PrintData(layers.BatchData(layers.dataset.Mnist("train", dir=tmp_path), 4))
    images, labels = _first_batch(ds)
    assert images.shape == (4, 28, 28) and images.dtype == np.float32 and labels.dtype == np.uint8
    assert "Contents of DataFlow" in capsys.readouterr().out


def test_cifar_convnet_pipeline_augments_normalizes_and_batches_in_worker_processes(tmp_path):
    write_cifar10(tmp_path)
    imgaug = layers.imgaug
    augmentors = [imgaug.RandomCrop((30, 30)), imgaug.Flip(horiz=True), imgaug.Brightness(63),
                  imgaug.Contrast((0.2, 1.8)), imgaug.MeanVarianceNormalize(all_channel=True)]
    ds = layers.AugmentImageComponent(layers.dataset.Cifar10("train", dir=tmp_path), augmentors)
    ds = layers.MultiProcessRunnerZMQ(layers.BatchData(ds, 4), 2)
    images, labels = _first_batch(ds)
    assert images.shape == (4, 30, 30, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-4)  # each image normalised
    assert labels.dtype == np.int32 and set(labels.tolist()) <= set(range(10))


def test_cifar_resnet_pipeline_subtracts_the_per_pixel_mean_with_a_lambda_in_workers(tmp_path):
    write_cifar10(tmp_path)
    imgaug = layers.imgaug
    ds = layers.dataset.Cifar10("test", shuffle=False, dir=tmp_path)
    pp_mean = ds.get_per_pixel_mean(("train",))
    augmentors = [imgaug.CenterPaste((40, 40)), imgaug.RandomCrop((32, 32)), imgaug.Flip(horiz=True),
                  imgaug.MapImage(lambda x: x - pp_mean)]
    ds = layers.MultiProcessRunner(layers.BatchData(layers.AugmentImageComponent(ds, augmentors), 2), 3, 2)
    images, labels = _first_batch(ds)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32


def test_evaluation_pipeline_keeps_the_remainder_and_is_deterministic(tmp_path):
    write_cifar10(tmp_path, per_batch=3)
    imgaug = layers.imgaug
    ds = layers.dataset.Cifar10("test", dir=tmp_path)
    assert ds.shuffle is False  # shuffle=None means: only the training set
    ds = layers.AugmentImageComponent(ds, [imgaug.CenterCrop((30, 30))])
    ds = layers.BatchData(ds, 2, remainder=True)
    ds.reset_state()
    batches = list(ds)
    assert len(ds) == 2 and [b[0].shape[0] for b in batches] == [2, 1]

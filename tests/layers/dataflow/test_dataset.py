"""Mnist/Cifar read tiny files written here in the standard formats; nothing is downloaded; CIFAR's
pickles are loaded through an unpickler that refuses every global but NumPy's array constructors."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from layers.dataflow import dataset
from layers.dataflow.dataset.safe_pickle import load_restricted

from .writers import cifar_batch, cifar_images, py2_pickle, write_cifar10, write_idx_images, write_idx_labels


def test_mnist_reads_the_idx_gzip_files_scaled_to_unit_range(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, (3, 28, 28))
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx_labels(tmp_path / "t10k-labels-idx1-ubyte.gz", [7, 2, 1])
    ds = dataset.Mnist("test", shuffle=False, dir=str(tmp_path))
    ds.reset_state()
    points = list(ds)
    assert len(ds) == 3 and [int(p[1]) for p in points] == [7, 2, 1]
    for (img, label), expected in zip(points, images, strict=True):
        assert img.shape == (28, 28) and img.dtype == np.float32 and label.dtype == np.uint8
        np.testing.assert_allclose(img, expected / 255.0, rtol=1e-6)


def test_mnist_finds_its_files_under_tensorpack_dataset(tmp_path, monkeypatch):
    (tmp_path / "mnist_data").mkdir()
    write_idx_images(tmp_path / "mnist_data" / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    write_idx_labels(tmp_path / "mnist_data" / "train-labels-idx1-ubyte.gz", [3, 4])
    monkeypatch.setenv("TENSORPACK_DATASET", str(tmp_path))
    ds = dataset.Mnist("train")
    ds.reset_state()
    assert sorted(int(p[1]) for p in ds) == [3, 4]


def test_mnist_missing_files_name_the_files_the_directory_and_the_source(tmp_path):
    with pytest.raises(dataset.DatasetNotFoundError) as info:
        dataset.Mnist("train", dir=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(tmp_path) in message and "yann.lecun.com" in message and "Nothing is downloaded" in message
    assert os.listdir(tmp_path) == []


def test_mnist_refuses_a_file_with_the_wrong_magic_number(tmp_path):
    write_idx_labels(tmp_path / "t10k-images-idx3-ubyte.gz", [1])  # a label file where images belong
    write_idx_labels(tmp_path / "t10k-labels-idx1-ubyte.gz", [1])
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        dataset.Mnist("test", dir=tmp_path)


def test_cifar10_reads_python2_batches_as_hwc_uint8_and_int_labels(tmp_path):
    written = write_cifar10(tmp_path)
    ds = dataset.Cifar10("train", dir=tmp_path)
    assert ds.shuffle is True and len(ds) == 10
    test = dataset.Cifar10("test", dir=tmp_path)
    test.reset_state()
    points = list(test)
    images, labels = written["test_batch"]
    assert [p[1] for p in points] == labels and all(type(p[1]) is int for p in points)
    for (img, _), expected in zip(points, images, strict=True):
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, expected)
    assert ds.get_label_names() == [f"class{k}" for k in range(10)]


def test_cifar10_means_match_numpy_over_the_written_images(tmp_path):
    written = write_cifar10(tmp_path)
    ds = dataset.Cifar10("test", dir=tmp_path)
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).astype(np.float32)
    np.testing.assert_allclose(ds.get_per_pixel_mean(("train",)), train.mean(axis=0), rtol=1e-5)
    everything = np.concatenate([train, written["test_batch"][0].astype(np.float32)])
    np.testing.assert_allclose(ds.get_per_channel_mean(), everything.mean(axis=(0, 1, 2)), rtol=1e-5)


def test_cifar10_reads_the_distribution_tarball_without_extracting_it(tmp_path):
    src = tmp_path / "src"
    written = write_cifar10(src)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = dataset.Cifar10("test", shuffle=False, dir=tmp_path)
    ds.reset_state()
    np.testing.assert_array_equal(np.stack([p[0] for p in ds]), written["test_batch"][0])
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar100_data" / "cifar-100-python"
    folder.mkdir(parents=True)
    images = cifar_images(3, 9)
    (folder / "train").write_bytes(cifar_batch(images, [5, 99, 0], "fine_labels"))
    (folder / "test").write_bytes(cifar_batch(images[:1], [42], "fine_labels"))
    (folder / "meta").write_bytes(py2_pickle({"fine_label_names": [f"c{k}" for k in range(100)],
                                               "coarse_label_names": ["x"] * 20}))
    ds = dataset.Cifar100("train", shuffle=False, dir=tmp_path / "cifar100_data")
    ds.reset_state()
    assert [p[1] for p in ds] == [5, 99, 0] and len(ds.get_label_names()) == 100


def test_cifar10_missing_files_name_the_files_and_the_tarball_to_get(tmp_path):
    with pytest.raises(dataset.DatasetNotFoundError) as info:
        dataset.Cifar10("train", dir=tmp_path)
    message = str(info.value)
    assert "cifar-10-batches-py/data_batch_1" in message and "cifar-10-batches-py/batches.meta" in message
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_naming_any_other_global_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    payload = py2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [_RunsACommand(marker)]})
    with pytest.raises(dataset.UnsafePickleError, match=r"refusing to load the global (posix|os)\.system"):
        load_restricted(io.BytesIO(payload), "evil")
    assert not marker.exists()


def test_a_cifar_batch_file_carrying_a_foreign_global_fails_the_dataset_load(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "executed"
    evil = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [_RunsACommand(marker)]}, protocol=4)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(dataset.UnsafePickleError, match="test_batch: refusing to load the global"):
        dataset.Cifar10("test", dir=tmp_path)
    assert not marker.exists()


def test_the_restricted_unpickler_admits_numpy2_array_pickles():
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    out = load_restricted(io.BytesIO(pickle.dumps({"a": arr, "b": [1, "x"]}, protocol=4)))
    np.testing.assert_array_equal(out["a"], arr)
    assert out["b"] == [1, "x"]

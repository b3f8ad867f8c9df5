"""The digits dataset: MNIST-like 28x28 images and a fixed, stratified 80/20 split."""
import numpy as np
import pytest

from model_zoo import datasets as D


@pytest.fixture(scope="module")
def digits():
    return D.load("digits")


def test_digits_has_all_1797_images_split_80_20(digits):
    assert len(digits.train_y) + len(digits.heldout_y) == 1797
    assert len(digits.heldout_y) == 359 and len(digits.train_y) == 1438
    assert digits.train_x.shape == (1438, 28, 28) and digits.heldout_x.shape == (359, 28, 28)
    assert digits.train_x.dtype == np.float32 and digits.train_y.dtype == np.int32


def test_digits_values_are_in_the_unit_range_with_a_dark_background(digits):
    x = digits.train_x
    assert x.min() == 0.0 and x.max() <= 1.0 and x.max() > 0.99
    assert np.mean(x[:, :, 0]) < 0.01                   # the left column is background in every digit


def test_heldout_split_is_stratified(digits):
    counts = np.bincount(digits.heldout_y, minlength=10)
    totals = counts + np.bincount(digits.train_y, minlength=10)
    np.testing.assert_array_equal(counts, np.rint(totals * D.HELDOUT_FRACTION))


def test_split_is_fixed_across_loads(digits):
    again = D.load_digits()
    np.testing.assert_array_equal(again.heldout_x, digits.heldout_x)
    np.testing.assert_array_equal(again.train_y, digits.train_y)


def test_images_are_the_sklearn_digits_upsampled():
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = D.load_digits(size=8)                           # no resampling at 8x8: values are v / 16
    first = x.train_x[0]
    assert any(np.array_equal(first, im / 16.0) for im in raw.images.astype(np.float32))


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid choices: digits"):
        D.load("mnist")

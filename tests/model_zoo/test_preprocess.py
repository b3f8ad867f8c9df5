"""NumPy image preprocessing: resampling against hand-computed values, crops, and each zoo model's
``preprocess_image`` (shape, dtype, channel order, scaling)."""
import numpy as np
import pytest

import model_zoo
from model_zoo import preprocess as P


def test_constant_image_stays_constant_for_every_method():
    img = np.full((37, 53, 3), 77, np.uint8)
    for method in ("bilinear", "bicubic", "area"):
        for size in ((10, 12), (80, 90)):
            out = P.resize(img, size, method)
            assert out.shape == (*size, 3) and out.dtype == np.uint8
            assert np.all(out == 77), method


def test_bilinear_2x_upsampling_uses_half_pixel_centres():
    # OpenCV INTER_LINEAR of [0, 4] to 4 samples: centres at -0.25, 0.25, 0.75, 1.25 -> 0, 1, 3, 4
    out = P.resize(np.array([[0.0, 4.0]], np.float32), (1, 4), "bilinear")
    np.testing.assert_allclose(out, [[0, 1, 3, 4]])


def test_area_downsampling_averages_blocks():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = P.resize(img, (2, 2), "area")
    np.testing.assert_allclose(out, [[2.5, 4.5], [10.5, 12.5]])


def test_area_with_a_fractional_scale_keeps_the_mean():
    img = np.random.default_rng(0).uniform(0, 1, (30, 30)).astype(np.float32)
    out = P.resize(img, (7, 7), "area")
    np.testing.assert_allclose(out.mean(), img.mean(), rtol=1e-5)


def test_bicubic_uses_opencvs_keys_kernel():
    """a = -0.75: at fractional offset t = 0.25 the four taps weigh -0.10546875, 0.87890625,
    0.26171875, -0.03515625 (exact binary fractions), so on a ramp the sample lands at x0 + 0.296875."""
    ramp = np.tile(np.arange(20, dtype=np.float32), (3, 1))
    out = P.resize(ramp, (3, 40), "bicubic")                    # 2x: offsets alternate 0.75, 0.25
    x0 = np.floor((np.arange(40) + 0.5) / 2 - 0.5)
    expected = np.where(np.arange(40) % 2 == 1, x0 + 0.296875, x0 + 0.703125)
    np.testing.assert_allclose(out[0, 4:-4], expected[4:-4], atol=1e-5)


def test_unknown_resize_method_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'nearest'; valid choices: bilinear, bicubic, area"):
        P.resize(np.zeros((4, 4)), (2, 2), "nearest")


@pytest.mark.parametrize("shape, expected", [((300, 400), (256, 341)), ((500, 375), (341, 256)),
                                             ((256, 256), (256, 256))])
def test_resize_shortest_edge_rounds_the_long_side_like_tensorpack(shape, expected):
    assert P.resize_shortest_edge(np.zeros((*shape, 3), np.uint8), 256).shape[:2] == expected


def test_center_crop_takes_the_floor_offset():
    img = np.arange(7 * 6).reshape(7, 6)
    np.testing.assert_array_equal(P.center_crop(img, (4, 3)), img[1:5, 1:4])
    with pytest.raises(ValueError, match="smaller than the crop"):
        P.center_crop(img, (8, 3))


def test_imagenet_preprocess_is_resize_crop_and_bgr():
    rgb = np.zeros((300, 450, 3), np.uint8)
    rgb[..., 0] = 200                                            # pure red
    zoo = model_zoo.get("imagenet-resnet", depth=18)
    x = zoo.preprocess_image(rgb)
    assert x.shape == (224, 224, 3) and x.dtype == np.uint8
    assert np.all(x[..., 2] == 200) and np.all(x[..., :2] == 0)   # red lands in the last (BGR) channel
    xf = model_zoo.get("vgg16", input_dtype="float32").preprocess_image(rgb)
    assert xf.dtype == np.float32 and xf.max() == 200.0


def test_imagenet_preprocess_crops_the_centre():
    rgb = np.zeros((256, 512, 3), np.uint8)
    rgb[:, 256 - 112:256 + 112] = 255                             # a white centre stripe, 224 wide
    x = model_zoo.get("shufflenet-v2").preprocess_image(rgb)
    assert x[:, 2:-2].min() == 255                               # bicubic ringing only at the edges


def test_mnist_preprocess_gives_28x28_gray_in_unit_range():
    rgb = np.zeros((56, 56, 3), np.uint8)
    rgb[10:40, 20:30] = 255
    x = model_zoo.get("mnist-convnet").preprocess_image(rgb)
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x[5:20, 10:15], 1.0)


def test_mnist_preprocess_accepts_grayscale_and_keeps_28x28_values():
    gray = np.random.default_rng(1).integers(0, 256, (28, 28)).astype(np.uint8)
    x = model_zoo.get("mnist-convnet").preprocess_image(gray)
    np.testing.assert_allclose(x, gray / 255.0, atol=1e-6)


def test_cifar_preprocess_subtracts_the_channel_means():
    rgb = np.full((32, 32, 3), 128, np.uint8)
    x = model_zoo.get("cifar10-resnet").preprocess_image(rgb)
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], 128 - np.asarray(P.CIFAR10_MEAN_RGB), rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8, 3), np.float32), "expects a uint8 image"),
    (np.zeros((8, 8, 2), np.uint8), "expects an HxWx3"),
    (np.zeros((2, 8, 8, 3), np.uint8), "expects an HxWx3"),
])
def test_preprocess_image_rejects_bad_arrays(bad, message):
    with pytest.raises(ValueError, match=message):
        model_zoo.get("mnist-convnet").preprocess_image(bad)

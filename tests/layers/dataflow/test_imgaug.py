"""Each augmentor against a hand-computed result, with its random generator fixed."""
import numpy as np
import pytest

from layers.dataflow import AugmentImageComponent, AugmentImageComponents, DataFromList, fix_rng_seed, imgaug


def _seeded(aug, seed):
    aug.rng = np.random.RandomState(seed)
    return aug


def _image(h=5, w=6, c=None, dtype=np.float32):
    shape = (h, w) if c is None else (h, w, c)
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


def test_randomcrop_draws_the_row_then_the_column_offset():
    img = _image()
    ref = np.random.RandomState(7)
    y0, x0 = ref.randint(5 - 3 + 1), ref.randint(6 - 4 + 1)
    out = _seeded(imgaug.RandomCrop((3, 4)), 7).augment(img)
    np.testing.assert_array_equal(out, img[y0:y0 + 3, x0:x0 + 4])


def test_randomcrop_refuses_an_image_smaller_than_the_crop():
    with pytest.raises(ValueError, match="smaller than 6x6"):
        imgaug.RandomCrop(6).augment(_image())


def test_centercrop_rounds_the_offset_down():
    # (5 - 2) / 2 = 1.5 -> 1 and (6 - 3) / 2 = 1.5 -> 1
    np.testing.assert_array_equal(imgaug.CenterCrop((2, 3)).augment(_image()), [[7, 8, 9], [13, 14, 15]])


def test_centerpaste_puts_the_image_in_the_middle_of_a_zero_canvas():
    out = imgaug.CenterPaste((4, 5)).augment(np.full((2, 2, 1), 9, dtype=np.uint8))
    expected = np.zeros((4, 5, 1), dtype=np.uint8)
    expected[1:3, 1:3] = 9  # int((4-2)/2) = 1, int((5-2)/2) = 1
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_centerpaste_uses_the_background_filler():
    filler = imgaug.ConstantBackgroundFiller(-1.0)
    out = imgaug.CenterPaste((3, 3), filler).augment(np.ones((1, 1), dtype=np.float32))
    np.testing.assert_array_equal(out, [[-1, -1, -1], [-1, 1, -1], [-1, -1, -1]])


def test_flip_decides_with_one_uniform_draw_per_image():
    img = _image()
    aug = _seeded(imgaug.Flip(horiz=True, prob=0.5), 3)
    ref = np.random.RandomState(3)
    for _ in range(8):
        expected = img[:, ::-1] if ref.uniform(0, 1) < 0.5 else img
        np.testing.assert_array_equal(aug.augment(img), expected)


def test_flip_vert_flips_rows_and_exactly_one_direction_is_required():
    np.testing.assert_array_equal(imgaug.Flip(vert=True, prob=1.0).augment(_image()), _image()[::-1])
    with pytest.raises(ValueError, match="exactly one"):
        imgaug.Flip(horiz=True, vert=True)
    with pytest.raises(ValueError, match="exactly one"):
        imgaug.Flip()


def test_brightness_adds_one_uniform_delta_and_clips_uint8():
    img = np.array([[0, 100, 250]], dtype=np.uint8)
    delta = np.float32(np.random.RandomState(0).uniform(-63, 63))  # +6.14...
    out = _seeded(imgaug.Brightness(63), 0).augment(img)
    np.testing.assert_array_equal(out, np.clip(img.astype(np.float32) + delta, 0, 255).astype(np.uint8))
    assert out.dtype == np.uint8 and out[0, 2] == 255


def test_brightness_clip_false_leaves_float_images_unclipped():
    img = np.array([[254.0, 255.0]], dtype=np.float32)
    delta = np.float32(np.random.RandomState(0).uniform(-10, 10))
    out = _seeded(imgaug.Brightness(10, clip=False), 0).augment(img)
    np.testing.assert_allclose(out, img + delta)
    assert out.max() > 255


def test_contrast_scales_around_each_channel_mean():
    img = np.random.RandomState(1).uniform(0, 255, (3, 4, 3)).astype(np.float32)
    r = np.float32(np.random.RandomState(2).uniform(0.2, 1.8))
    mean = img.mean(axis=(0, 1))
    out = _seeded(imgaug.Contrast((0.2, 1.8)), 2).augment(img)
    np.testing.assert_allclose(out, np.clip((img - mean) * r + mean, 0, 255), rtol=1e-5, atol=1e-3)


def test_contrast_with_rgb_uses_the_grey_mean():
    img = np.random.RandomState(1).uniform(0, 255, (2, 2, 3)).astype(np.float32)
    r = np.float32(np.random.RandomState(4).uniform(0.5, 0.6))
    grey_mean = (img @ np.array([0.299, 0.587, 0.114])).mean()
    out = _seeded(imgaug.Contrast((0.5, 0.6), rgb=True), 4).augment(img)
    np.testing.assert_allclose(out, (img - grey_mean) * r + grey_mean, rtol=1e-5, atol=1e-3)


def test_meanvariancenormalize_all_channels_together():
    img = _image(2, 2, 3)
    out = imgaug.MeanVarianceNormalize(all_channel=True).augment(img)
    np.testing.assert_allclose(out, (img - 5.5) / np.std(np.arange(12.0)), rtol=1e-6)
    assert out.dtype == np.float32


def test_meanvariancenormalize_per_channel():
    img = _image(2, 2, 3)
    out = imgaug.MeanVarianceNormalize(all_channel=False).augment(img)
    # channel c holds c, c+3, c+6, c+9: mean c+4.5, std sqrt(11.25)
    np.testing.assert_allclose(out, (img - (np.arange(3) + 4.5)) / np.sqrt(11.25), rtol=1e-6)


def test_meanvariancenormalize_floors_the_std_at_one_over_sqrt_of_the_element_count():
    img = np.array([[[3.0, 3.0], [3.0, 5.0]]], dtype=np.float32)  # 4 elements, std sqrt(0.75) > 0.5
    flat = np.full((2, 2, 4), 7.0, dtype=np.float32)  # std 0 -> floor 1/sqrt(16)
    np.testing.assert_allclose(imgaug.MeanVarianceNormalize().augment(img),
                               (img - 3.5) / np.sqrt(0.75), rtol=1e-6)
    np.testing.assert_array_equal(imgaug.MeanVarianceNormalize().augment(flat), np.zeros_like(flat))
    per_channel = np.array([[[1.0, 0.0], [1.0, 2.0]]], dtype=np.float32)  # channel 0 is flat
    out = imgaug.MeanVarianceNormalize(all_channel=False).augment(per_channel)
    np.testing.assert_allclose(out[..., 1], [[-1.0, 1.0]], rtol=1e-6)  # (x - 1) / std 1
    np.testing.assert_array_equal(out[..., 0], [[0.0, 0.0]])  # 0 / floor 0.5


def test_mapimage_applies_the_function():
    np.testing.assert_array_equal(imgaug.MapImage(lambda x: x - 1).augment(_image(1, 3)), [[-1, 0, 1]])


def test_resize_linear_matches_opencv_half_pixel_sampling():
    # cv2.resize([[0, 4]], (4, 1)): samples at x = -0.25, 0.25, 0.75, 1.25 -> 0, 1, 3, 4
    out = imgaug.Resize((1, 4)).augment(np.array([[0.0, 4.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0, 1, 3, 4]])
    assert out.dtype == np.float32


def test_resize_nearest_and_cubic_follow_opencv_rules():
    src = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(imgaug.Resize((1, 2), interp=imgaug.INTER_NEAREST).augment(src), [[0, 2]])
    # Keys' kernel, a = -0.75, edge pixels repeated: worked out by hand for x = -0.25, 0.25, 0.75, 1.25
    out = imgaug.Resize((1, 4), interp=imgaug.INTER_CUBIC).augment(np.array([[0.0, 4.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[-0.421875, 0.90625, 3.09375, 4.421875]], rtol=1e-6)


def test_resize_rounds_uint8_and_keeps_channels():
    out = imgaug.Resize((1, 4)).augment(np.array([[[0], [5]]], dtype=np.uint8))
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 4, 5]])  # 1.25 -> 1, 3.75 -> 4
    assert out.shape == (1, 4, 1) and out.dtype == np.uint8


def test_resize_refuses_unsupported_interpolation():
    with pytest.raises(ValueError, match="INTER_AREA"):
        imgaug.Resize(2, interp=3).augment(_image())


def test_resizeshortestedge_keeps_the_aspect_ratio():
    assert imgaug.ResizeShortestEdge(2).augment(_image(4, 7)).shape == (2, 4)  # 7 * 0.5 = 3.5 -> 4
    assert imgaug.ResizeShortestEdge(3).augment(_image(8, 4)).shape == (6, 3)


def test_augmentorlist_applies_in_order_each_seeing_the_previous_output():
    img = np.ones((2, 2), dtype=np.float32)
    augs = imgaug.AugmentorList([imgaug.CenterPaste((4, 4)), imgaug.RandomCrop(3)])
    _seeded(augs.augmentors[1], 5)  # after construction: AugmentorList() resets its members, as in tensorpack
    canvas = np.zeros((4, 4), dtype=np.float32)
    canvas[1:3, 1:3] = 1
    ref = np.random.RandomState(5)
    y0, x0 = ref.randint(2), ref.randint(2)
    np.testing.assert_array_equal(augs.augment(img), canvas[y0:y0 + 3, x0:x0 + 3])


def test_reset_state_reseeds_from_get_rng():
    aug = imgaug.Brightness(50)
    fix_rng_seed(11)
    try:
        aug.reset_state()
    finally:
        fix_rng_seed(None)
    expected = np.float32(np.random.RandomState(11).uniform(-50, 50))
    np.testing.assert_allclose(aug.augment(np.full((1, 1), 100.0, dtype=np.float32)), [[100 + expected]])


def test_augmentimagecomponent_augments_a_copy_of_the_indexed_component():
    img = _image(2, 3)
    ds = AugmentImageComponent(DataFromList([[7, img]], shuffle=False), [imgaug.Flip(horiz=True, prob=1.0)], index=1)
    ds.reset_state()
    ((label, out),) = list(ds)
    assert label == 7
    np.testing.assert_array_equal(out, img[:, ::-1])
    np.testing.assert_array_equal(img, _image(2, 3))


def test_augmentimagecomponent_catch_exceptions_drops_bad_datapoints():
    points = [[_image(2, 2)], [_image(4, 4)]]
    ds = AugmentImageComponent(DataFromList(points, shuffle=False), [imgaug.RandomCrop(3)], catch_exceptions=True)
    ds.reset_state()
    assert [dp[0].shape for dp in ds] == [(3, 3)]
    strict = AugmentImageComponent(DataFromList(points, shuffle=False), [imgaug.RandomCrop(3)])
    strict.reset_state()
    with pytest.raises(ValueError, match="smaller than 3x3"):
        list(strict)


def test_augmentimagecomponents_applies_the_same_random_crop_to_image_and_mask():
    img, mask = _image(5, 5), _image(5, 5) * 10
    ds = AugmentImageComponents(DataFromList([[img, mask]], shuffle=False), [imgaug.RandomCrop(2)], index=(0, 1))
    ds.reset_state()
    ((out_img, out_mask),) = list(ds)
    np.testing.assert_array_equal(out_mask, out_img * 10)


def test_brightnessscale_multiplies_by_one_uniform_factor():
    img = np.array([[10.0, 200.0]], dtype=np.float32)
    factor = np.float32(np.random.RandomState(6).uniform(0.5, 1.5))
    out = _seeded(imgaug.BrightnessScale((0.5, 1.5)), 6).augment(img)
    np.testing.assert_allclose(out, np.clip(img * factor, 0, 255), rtol=1e-6)


def test_minmaxnormalize_and_clip():
    img = np.array([[[2.0, 0.0], [4.0, 10.0]]], dtype=np.float32)
    np.testing.assert_allclose(imgaug.MinMaxNormalize(0, 1).augment(img), img / 10.0)
    per_channel = imgaug.MinMaxNormalize(0, 1, all_channel=False).augment(img)
    np.testing.assert_allclose(per_channel, [[[0.0, 0.0], [1.0, 1.0]]])
    np.testing.assert_array_equal(imgaug.Clip(1, 3).augment(img), [[[2, 1], [3, 3]]])

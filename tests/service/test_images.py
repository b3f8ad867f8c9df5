"""Image decoding: every limit is checked from the header before decoding, and big images are reduced
before the model's NumPy preprocessing sees them."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import PayloadTooLarge
from service.images import decode_image, needed_size


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_a_tiny_png_declaring_4_million_by_1_pixels_is_refused_from_its_header():
    data = _encode(Image.new("L", (4_000_000, 1)), "PNG")
    assert len(data) < 10_000                              # a few KB on the wire
    with pytest.raises(PayloadTooLarge, match=r"4000000x1; width and height are limited to 10000 each"):
        decode_image(data, max_pixels=40_000_000, max_side=10_000)


@pytest.mark.parametrize(("size", "side_ok"), [((300, 20), False), ((20, 300), False), ((200, 200), True)])
def test_width_and_height_are_limited_separately(size, side_ok):
    data = _encode(Image.new("RGB", size), "PNG")
    if side_ok:
        assert decode_image(data, max_pixels=10**6, max_side=256).shape == (size[1], size[0], 3)
    else:
        with pytest.raises(PayloadTooLarge, match="TPSERVE_MAX_IMAGE_SIDE"):
            decode_image(data, max_pixels=10**6, max_side=256)


def test_the_pixel_limit_still_applies_to_the_product():
    data = _encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(PayloadTooLarge, match="40000 pixels, the limit is 39999"):
        decode_image(data, max_pixels=39_999, max_side=10_000)


def test_a_large_png_is_box_reduced_to_at_least_twice_what_the_model_keeps(rng):
    pixels = rng.integers(0, 256, (1000, 1200, 3), dtype=np.uint8)       # 1.2 MP
    got = decode_image(_encode(Image.fromarray(pixels), "PNG", compress_level=1), 10**7, need=(100, 100))
    # factor = min(1200 // 200, 1000 // 200) = 5: a 5x5 box mean (independent NumPy reference)
    want = pixels.reshape(200, 5, 240, 5, 3).astype(np.float64).mean(axis=(1, 3))
    assert got.shape == (200, 240, 3)
    assert np.abs(got.astype(np.float64) - want).max() <= 1.0      # Pillow rounds in fixed point


@pytest.mark.parametrize("shape", [(50, 60, 3), (900, 1000, 3)])    # not much larger; large but under 1 MP
def test_an_image_not_much_larger_than_needed_or_under_1_mp_is_left_alone(rng, shape):
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    got = decode_image(_encode(Image.fromarray(pixels), "PNG", compress_level=1), 10**7, need=(28, 28))
    np.testing.assert_array_equal(got, pixels)


def test_a_large_jpeg_is_reduced_by_the_decoder(rng):
    smooth = np.kron(rng.integers(0, 256, (25, 25, 3)), np.ones((80, 80, 1))).astype(np.uint8)  # 2000x2000
    data = _encode(Image.fromarray(smooth), "JPEG", quality=95)
    got = decode_image(data, 10**7, need=(28, 28))
    assert 56 <= min(got.shape[:2]) < 112                   # >= 2x the need, and reduced as far as allowed
    # each 80x80 block of one colour is still that colour after reduction (JPEG error aside)
    step = got.shape[0] / 25
    centre = got[int(step * 12.5), int(step * 12.5)].astype(int)
    assert np.abs(centre - smooth[1000, 1000].astype(int)).max() <= 6


class _Model:
    def __init__(self, shape):
        self.inputs = [type("Spec", (), {"shape": shape})()]


@pytest.mark.parametrize(("shape", "need"), [((28, 28, 1), (28, 28)), ((224, 224, 3), (224, 224)),
                                               ((28, 28), (28, 28)),      # the bundled digits model: HxW gray
                                               ((None, None, 3), None), ((3,), None)])
def test_needed_size_comes_from_the_input_spec(shape, need):
    assert needed_size(_Model(shape)) == need

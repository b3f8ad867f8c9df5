"""Decoding uploaded images safely (PNG and JPEG only), with size limits, off the event loop.

The cost of an image is bounded before it is paid: the header's width and height are each checked
against ``max_side`` and their product against ``max_pixels`` before any pixel is decoded, so a
3 KB PNG declaring 4,000,000 x 1 pixels costs a header read. Decoding then allocates width x height x 3
bytes (<= 120 MB at the 40 MP default); an image above 1 MP and far larger than the model needs is
box-reduced by an integer factor right after decoding (JPEG: by the decoder itself, at 1/2, 1/4 or 1/8 scale), so the
zoo's NumPy preprocessing never runs on more than about twice the pixels it keeps.
Decoding and preprocessing run on a small thread pool (Pillow and NumPy release the GIL there), never
on the event loop that answers health checks and other clients.
"""
from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .errors import InvalidRequest, PayloadTooLarge, ServiceError

__all__ = ["decode_image", "UnsupportedMediaType", "IMAGE_TYPES", "top_k", "image_row", "run_image_work",
           "RawImage", "RawImageBatch", "defer_preprocessing", "stack_rows",
           "needed_size", "REDUCE_ABOVE_PIXELS"]

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}

# Two threads: enough to keep a core busy with image work while the other serves the loop; a flood of
# large images queues here instead of taking every core from inference.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tpserve-image")


class UnsupportedMediaType(ServiceError):
    status = 415


def _too_large(msg: str, received=None) -> PayloadTooLarge:
    return PayloadTooLarge(msg, field="image", expected="a smaller image", received=received)


# Below this many pixels the model's own preprocessing is cheap (tens of MB at most): such images are
# passed on untouched, so typical uploads give exactly what the zoo's preprocess_image gives.
REDUCE_ABOVE_PIXELS = 1_000_000


def _reduce_factor(w: int, h: int, need: tuple[int, int] | None, any_size: bool = False) -> int:
    """For an image above REDUCE_ABOVE_PIXELS (or of ``any_size``): the largest integer box factor that
    keeps both sides >= twice what the model keeps; else 1."""
    if need is None or (w * h <= REDUCE_ABOVE_PIXELS and not any_size):
        return 1
    return max(1, min(w // (2 * max(1, need[1])), h // (2 * max(1, need[0]))))


def decode_image(data: bytes, max_pixels: int, max_side: int = 10_000,
                 need: tuple[int, int] | None = None) -> np.ndarray:
    """PNG/JPEG bytes -> HxWx3 uint8 RGB.

    ``max_side`` bounds width and height each and ``max_pixels`` their product, both read from the
    header before decoding. ``need = (height, width)``: the smallest image the consumer keeps; an image
    above 1 MP and much larger comes back box-reduced by an integer factor (never below twice ``need``).
    """
    if not data:
        raise InvalidRequest("the image is empty", field="image", expected="PNG or JPEG bytes", received="0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format
            w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(f"image dimensions exceed the pixel limit of {max_pixels}") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for garbage
        raise InvalidRequest("the image could not be decoded (corrupt or not an image)", field="image",
                             expected="PNG or JPEG bytes") from None
    if fmt not in ("PNG", "JPEG"):
        raise UnsupportedMediaType(f"unsupported image format {fmt}; send PNG or JPEG", field="image",
                                   expected=["PNG", "JPEG"], received=fmt)
    if w > max_side or h > max_side:
        raise _too_large(f"image is {w}x{h}; width and height are limited to {max_side} each "
                         "(TPSERVE_MAX_IMAGE_SIDE)", received=f"{w}x{h}")
    if w * h > max_pixels:
        raise _too_large(f"image is {w}x{h} = {w * h} pixels, the limit is {max_pixels} "
                         "(TPSERVE_MAX_IMAGE_PIXELS)", received=w * h)
    factor = _reduce_factor(w, h, need)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if factor > 1 and fmt == "JPEG":
                im.draft("RGB", (w // factor, h // factor))      # the decoder skips detail it would drop
                factor = _reduce_factor(*im.size, need, any_size=True)     # what the decoder left to do
            im = im.convert("RGB")
            if factor > 1:
                im = im.reduce(factor)
            rgb = np.asarray(im, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(f"image exceeds the pixel limit of {max_pixels}") from None
    except Exception:  # noqa: BLE001 - truncated data shows up at decode time
        raise InvalidRequest("the image data is truncated or corrupt", field="image",
                             expected="PNG or JPEG bytes") from None
    return rgb


def needed_size(model) -> tuple[int, int] | None:
    """(height, width) of the model's image input (HxW gray or HxWxC), when its dimensions are known."""
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    if len(shape) in (2, 3) and all(isinstance(d, int) and d > 0 for d in shape[:2]):
        return shape[0], shape[1]
    return None


def image_row(model, data: bytes, settings, field: str = "image") -> np.ndarray:
    """Image bytes -> one input row of ``model`` (decode + the model's own preprocessing). Blocking:
    call it through :func:`run_image_work`."""
    pre = getattr(model, "preprocess_image", None)
    if pre is None:
        raise InvalidRequest(f"model {model.name!r} does not take images", field=field)
    rgb = decode_image(data, settings.max_image_pixels, settings.max_image_side, needed_size(model))
    return pre(rgb)


class RawImage(np.ndarray):
    """A decoded upload (HxWx3 uint8 RGB) whose model-specific preprocessing is left to the engine process.

    The architectures' image transforms live with the models in the engine (the zoo imports
    TensorFlow); a front end does the expensive, attacker-controlled part (decoding, with the size
    limits and the early reduction above) and the engine runs the model's ``preprocess_image`` on its
    own image thread pool (:mod:`service.engine`)."""


class RawImageBatch(list):
    """Several :class:`RawImage` rows for one input (TF Serving ``b64`` instances; sizes may differ)."""

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)


def defer_preprocessing(rgb: np.ndarray) -> RawImage:
    """A front end's ``preprocess_image``: only marks the decoded image for the engine."""
    return np.ascontiguousarray(rgb).view(RawImage)


def stack_rows(rows: list[np.ndarray]):
    """Image rows of one input -> the batch: stacked, or a :class:`RawImageBatch` of decoded images."""
    if rows and isinstance(rows[0], RawImage):
        return RawImageBatch(rows)
    return np.stack(rows)


async def run_image_work(fn, *args):
    """Run blocking image work on the image pool, keeping the event loop free."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


def top_k(prob: np.ndarray, labels: list[str] | None, k: int) -> list[list[dict]]:
    """Per row: the k best classes as ``{"label", "index", "score"}``, best first."""
    k = max(1, min(k, prob.shape[1]))
    idx = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[i] if labels and i < len(labels) else str(i), "index": int(i),
              "score": float(row[i])} for i in ids] for row, ids in zip(prob, idx, strict=True)]

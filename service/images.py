"""Decoding uploaded images safely (PNG and JPEG only), with size limits."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from .errors import InvalidRequest, PayloadTooLarge, ServiceError

__all__ = ["decode_image", "UnsupportedMediaType", "IMAGE_TYPES", "top_k"]

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}


class UnsupportedMediaType(ServiceError):
    status = 415


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> HxWx3 uint8 RGB. Checks the declared size *before* decoding, so a
    decompression bomb costs a header read, not gigabytes of memory."""
    if not data:
        raise InvalidRequest("the image is empty", field="image", expected="PNG or JPEG bytes", received="0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format
            w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(f"image dimensions exceed the pixel limit of {max_pixels}", field="image",
                              expected=f"<= {max_pixels} pixels") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for garbage
        raise InvalidRequest("the image could not be decoded (corrupt or not an image)", field="image",
                             expected="PNG or JPEG bytes") from None
    if fmt not in ("PNG", "JPEG"):
        raise UnsupportedMediaType(f"unsupported image format {fmt}; send PNG or JPEG", field="image",
                                   expected=["PNG", "JPEG"], received=fmt)
    if w * h > max_pixels:
        raise PayloadTooLarge(f"image is {w}x{h} = {w * h} pixels, the limit is {max_pixels} "
                              "(TPSERVE_MAX_IMAGE_PIXELS)", field="image", expected=f"<= {max_pixels} pixels",
                              received=w * h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(f"image exceeds the pixel limit of {max_pixels}", field="image") from None
    except Exception:  # noqa: BLE001 - truncated data shows up at decode time
        raise InvalidRequest("the image data is truncated or corrupt", field="image",
                             expected="PNG or JPEG bytes") from None
    return rgb


def top_k(prob: np.ndarray, labels: list[str] | None, k: int) -> list[list[dict]]:
    """Per row: the k best classes as ``{"label", "index", "score"}``, best first."""
    k = max(1, min(k, prob.shape[1]))
    idx = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[i] if labels and i < len(labels) else str(i), "index": int(i),
              "score": float(row[i])} for i in ids] for row, ids in zip(prob, idx, strict=True)]

"""Deterministic image transforms: what an augmentor's random choice turns into (tensorpack's ``Transform``).

An augmentor draws its random parameters in ``get_transform(img)`` and returns one of these; the
transform then applies the same operation to the image (``apply_image``) and, where it makes sense, to
``(N, 2)`` arrays of ``(x, y)`` coordinates (``apply_coords``).
"""
from ._resize import resize

__all__ = ["Transform", "NoOpTransform", "CropTransform", "FlipTransform", "ResizeTransform",
           "PhotometricTransform", "TransformFactory", "LazyTransform", "TransformList"]


class Transform:
    """Base class. Subclasses implement ``apply_image``; ``apply_coords`` raises unless implemented."""

    def apply_image(self, img):
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_image")

    def apply_coords(self, coords):
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_coords")


class NoOpTransform(Transform):
    """Leaves images and coordinates unchanged."""

    def apply_image(self, img):
        return img

    def apply_coords(self, coords):
        return coords


class CropTransform(Transform):
    """Keep the ``h x w`` window whose top-left corner is row ``y0``, column ``x0``."""

    def __init__(self, y0, x0, h, w):
        self.y0, self.x0, self.h, self.w = int(y0), int(x0), int(h), int(w)

    def apply_image(self, img):
        return img[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w]

    def apply_coords(self, coords):
        coords[:, 0] -= self.x0
        coords[:, 1] -= self.y0
        return coords


class FlipTransform(Transform):
    """Mirror an ``h x w`` image left-right (``horiz=True``) or top-bottom."""

    def __init__(self, h, w, horiz=True):
        self.h, self.w, self.horiz = h, w, horiz

    def apply_image(self, img):
        return img[:, ::-1] if self.horiz else img[::-1]

    def apply_coords(self, coords):
        if self.horiz:
            coords[:, 0] = self.w - coords[:, 0]
        else:
            coords[:, 1] = self.h - coords[:, 1]
        return coords


class ResizeTransform(Transform):
    """Resize an ``h x w`` image to ``new_h x new_w`` with OpenCV's interpolation rules (see ``_resize``)."""

    def __init__(self, h, w, new_h, new_w, interp):
        self.h, self.w, self.new_h, self.new_w, self.interp = h, w, int(new_h), int(new_w), interp

    def apply_image(self, img):
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(f"ResizeTransform: expected an image of {self.h}x{self.w}, got {img.shape[:2]}")
        return resize(img, self.new_h, self.new_w, self.interp)

    def apply_coords(self, coords):
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords


class PhotometricTransform(Transform):
    """Changes pixel values with ``func``; coordinates pass through unchanged."""

    def __init__(self, func, name=None):
        self._func = func
        self._name = name

    def apply_image(self, img):
        return self._func(img)

    def apply_coords(self, coords):
        return coords


class TransformFactory(Transform):
    """A transform built from functions: ``TransformFactory(apply_image=f, apply_coords=g)``."""

    def __init__(self, name=None, **kwargs):
        self._name = name
        for key, func in kwargs.items():
            if not key.startswith("apply_"):
                raise KeyError(f"TransformFactory: unknown argument {key!r}; expected apply_image=, apply_coords=")
            setattr(self, key, func)


class LazyTransform(Transform):
    """A transform decided on first use: ``get_transform(img)`` runs on the first image it is applied to.

    ``AugmentorList`` needs it because each augmentor's random choice depends on the image the previous
    augmentor produced.
    """

    def __init__(self, get_transform):
        self._get_transform = get_transform
        self._tfm = None

    def apply_image(self, img):
        if self._tfm is None:
            self._tfm = self._get_transform(img)
        return self._tfm.apply_image(img)

    def apply_coords(self, coords):
        if self._tfm is None:
            raise RuntimeError("LazyTransform: apply_image must run before apply_coords")
        return self._tfm.apply_coords(coords)


class TransformList(Transform):
    """Several transforms applied in order."""

    def __init__(self, tfms):
        self.tfms = list(tfms)

    def apply_image(self, img):
        for t in self.tfms:
            img = t.apply_image(img)
        return img

    def apply_coords(self, coords):
        for t in self.tfms:
            coords = t.apply_coords(coords)
        return coords


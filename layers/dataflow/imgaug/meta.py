"""Augmentors built from functions or other augmentors (tensorpack's ``meta.py``)."""
from .base import ImageAugmentor
from .transform import NoOpTransform, TransformFactory

__all__ = ["MapImage", "Identity", "RandomApplyAug"]


class MapImage(ImageAugmentor):
    """Apply ``func(img) -> img`` (e.g. ``lambda x: x - mean``); ``coord_func`` maps ``(N, 2)`` (x, y)
    coordinates when given (otherwise ``apply_coords`` raises)."""

    def __init__(self, func, coord_func=None):
        if not callable(func):
            raise TypeError(f"MapImage: func must be callable, got {type(func).__name__}")
        self.func, self.coord_func = func, coord_func
        super().__init__()

    def get_transform(self, img):
        if self.coord_func is None:
            return TransformFactory(name="MapImage", apply_image=self.func)
        return TransformFactory(name="MapImage", apply_image=self.func, apply_coords=self.coord_func)


class Identity(ImageAugmentor):
    """Leaves the image unchanged."""

    def get_transform(self, img):
        return NoOpTransform()


class RandomApplyAug(ImageAugmentor):
    """Apply ``aug`` with probability ``prob``, else nothing (one ``rng.rand()`` draw per image)."""

    def __init__(self, aug, prob):
        self.aug, self.prob = aug, prob
        super().__init__()

    def reset_state(self):
        super().reset_state()
        self.aug.reset_state()

    def get_transform(self, img):
        return self.aug.get_transform(img) if self.rng.rand() < self.prob else NoOpTransform()

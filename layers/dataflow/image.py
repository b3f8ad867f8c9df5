"""Dataflows that augment image components (tensorpack's ``AugmentImageComponent(s)``)."""
import copy
import logging

from .common import MapData, MapDataComponent
from .imgaug.base import AugmentorList, check_image

__all__ = ["AugmentImageComponent", "AugmentImageComponents"]

logger = logging.getLogger(__name__)


def _as_augmentor_list(augmentors):
    return augmentors if isinstance(augmentors, AugmentorList) else AugmentorList(augmentors)


class _ErrorCounter:
    """With ``catch_exceptions``, an augmentation error drops the datapoint and is logged (the first
    ten, then every hundredth); without it, the error propagates."""

    def __init__(self, catch_exceptions):
        self.catch_exceptions = catch_exceptions
        self.count = 0

    def handle(self, who):
        self.count += 1
        if not self.catch_exceptions:
            raise
        if self.count < 10 or self.count % 100 == 0:
            logger.exception("%s: %d augmentation errors so far; the datapoint is dropped", who, self.count)


class AugmentImageComponent(MapDataComponent):
    """Augment component ``index`` (an int or dict key, default 0) of every datapoint.

    Args:
        ds: the input dataflow.
        augmentors: a list of augmentors (or an ``AugmentorList``), applied in order.
        index: which component holds the image.
        copy: ``True`` (default) augments a deep copy, leaving ``ds``'s arrays untouched (some
            augmentors work in place); ``False`` saves the copy when that is safe.
        catch_exceptions: ``True`` drops a datapoint whose augmentation fails instead of raising.

    ``reset_state()`` also resets the augmentors' random generators.
    """

    def __init__(self, ds, augmentors, index=0, copy=True, catch_exceptions=False):
        self.augs = _as_augmentor_list(augmentors)
        self._copy = copy
        self._errors = _ErrorCounter(catch_exceptions)
        super().__init__(ds, self._augment, index)

    def reset_state(self):
        self.ds.reset_state()
        self.augs.reset_state()

    def _augment(self, img):
        check_image(img, "AugmentImageComponent")
        try:
            return self.augs.augment(copy.deepcopy(img) if self._copy else img)
        except Exception:
            self._errors.handle("AugmentImageComponent")
            return None


class AugmentImageComponents(MapData):
    """Augment several image components of a datapoint with the *same* random parameters (e.g. an image
    and its segmentation mask).

    Args:
        index: indices of the image components; the first one decides the random parameters.
        coords_index: indices of ``(N, 2)`` float arrays of (x, y) coordinates to transform alike.
        copy, catch_exceptions: as for :class:`AugmentImageComponent`.
    """

    def __init__(self, ds, augmentors, index=(0, 1), coords_index=(), copy=True, catch_exceptions=False):
        self.augs = _as_augmentor_list(augmentors)
        self._index = tuple(index)
        self._coords_index = tuple(coords_index)
        self._copy = copy
        self._errors = _ErrorCounter(catch_exceptions)
        if not self._index:
            raise ValueError("AugmentImageComponents: index must name at least one image component")
        super().__init__(ds, self._augment)

    def reset_state(self):
        self.ds.reset_state()
        self.augs.reset_state()

    def _augment(self, dp):
        dp = list(dp) if isinstance(dp, tuple) else copy.copy(dp)
        dup = copy.deepcopy if self._copy else (lambda x: x)
        try:
            first = dup(dp[self._index[0]])
            check_image(first, "AugmentImageComponents")
            tfm = self.augs.get_transform(first)
            dp[self._index[0]] = tfm.apply_image(first)
            for k in self._index[1:]:
                check_image(dp[k], "AugmentImageComponents")
                dp[k] = tfm.apply_image(dup(dp[k]))
            for k in self._coords_index:
                dp[k] = tfm.apply_coords(dup(dp[k]))
            return dp
        except Exception:
            self._errors.handle("AugmentImageComponents")
            return None

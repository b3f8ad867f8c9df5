"""``tensorpack.tfutils.sessinit``: the same objects as :mod:`layers.sessinit`."""
from ..sessinit import (
    ChainInit,
    DictRestore,
    JustCurrentSession,
    SaverRestore,
    SessionInit,
    SmartInit,
    get_model_loader,
)

#: tensorpack's relaxed restore; :class:`SaverRestore` already handles reshape/cast like a dict restore.
SaverRestoreRelaxed = SaverRestore

__all__ = ["SessionInit", "JustCurrentSession", "DictRestore", "SaverRestore", "SaverRestoreRelaxed",
           "ChainInit", "SmartInit", "get_model_loader"]

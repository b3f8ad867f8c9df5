"""Where dataset files are looked for, and the error raised when they are not there. Nothing downloads."""
import os
from pathlib import Path

__all__ = ["DatasetNotFoundError", "dataset_dir", "require_files"]


class DatasetNotFoundError(FileNotFoundError):
    """The files a dataset reads are missing. The message names them, the directory searched, and
    where to get them: this package never downloads anything."""


def dataset_dir(dir, default_name):
    """``dir`` when given, else ``$TENSORPACK_DATASET/<default_name>`` (tensorpack's variable and
    sub-directory names), else ``~/tensorpack_data/<default_name>`` (tensorpack's default)."""
    if dir is not None:
        return Path(dir)
    root = os.environ.get("TENSORPACK_DATASET")
    return Path(root if root else Path.home() / "tensorpack_data") / default_name


def require_files(who, directory, names, source):
    """The paths of ``names`` under ``directory``; raises ``DatasetNotFoundError`` listing the missing ones."""
    paths = [directory / name for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{who}: missing {len(missing)} of the files it reads from {directory}: "
            f"{', '.join(str(p.relative_to(directory)) for p in missing)}. Expected files: "
            f"{', '.join(names)}. {source} Nothing is downloaded automatically: put the files there, or pass "
            "dir=... or set $TENSORPACK_DATASET to the directory holding them.")
    return paths

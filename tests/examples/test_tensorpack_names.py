"""The table in ``examples/README.md`` of the tensorpack names tensorpack's MNIST, CIFAR convnet and
CIFAR ResNet scripts use: every name resolves in the module the table gives, and a name the
scripts get from an ``import *`` line is in that module's ``__all__`` (else the star import would
not bring it)."""
import importlib
import re

import pytest
import tensorflow as tf

import layers

from ..service.realmodel import ROOT

README = ROOT / "examples" / "README.md"
TABLE_HEADER = "| tensorpack | names the scripts use | tpserve |"


def _rows():
    lines = README.read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2          # skip the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        tensorpack, names, tpserve = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((tensorpack, re.findall(r"`([^`]+)`", names), tpserve.strip("`")))
    return rows


ROWS = _rows()


def _resolve(dotted):
    """Import the longest module prefix of ``dotted`` and walk the remaining attributes."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_table_covers_the_three_scripts_names():
    names = {n for _, row_names, _ in ROWS for n in row_names}
    # a sample from each script and each kind of row: a truncated table fails here
    assert {"tfv1", "ModelDesc", "MultiProcessRunnerZMQ", "StatMonitorParamSetter", "Cifar10.get_per_pixel_mean",
            "MeanVarianceNormalize", "add_param_summary", "get_num_gpu", "auto_set_dir", "training",
            "tf.train.exponential_decay"} <= names
    assert len(names) == 85


@pytest.mark.parametrize(("tensorpack", "names", "tpserve"), ROWS, ids=[r[0] for r in ROWS])
def test_every_name_resolves_where_the_table_says(tensorpack, names, tpserve):
    where = _resolve(tpserve)
    for name in names:
        attr = name[len("tf."):] if tpserve == "layers.tfv1" else name
        obj = where
        for part in attr.split("."):
            assert hasattr(obj, part), f"{tpserve} has no {attr} ({tensorpack})"
            obj = getattr(obj, part)
        if "import *" in tensorpack:
            assert name in where.__all__, f"`from {tpserve} import *` does not give {name}"


def test_tfv1_is_tensorflow_compat_v1():
    assert layers.tfv1 is tf.compat.v1

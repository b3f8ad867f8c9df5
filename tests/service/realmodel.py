"""Helpers for tests that use the bundled, trained digits model (model_repository/digits)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "model_repository"


@functools.lru_cache(maxsize=1)
def heldout():
    from model_zoo.datasets import load_digits

    ds = load_digits()
    return ds.heldout_x, ds.heldout_y


@functools.lru_cache(maxsize=1)
def reference_predictor():
    """The in-process predictor on the same weights: what HTTP answers are compared with."""
    import layers
    import model_zoo

    zoo = model_zoo.get("mnist-convnet")
    weights = next((REPO / "digits" / "1").glob("*.npz"))
    cfg = layers.PredictConfig(model=zoo.model, input_names=zoo.input_names,
                               output_names=[o.tensor for o in zoo.outputs],
                               session_init=layers.SmartInit(str(weights)))
    return layers.OfflinePredictor(cfg), [o.name for o in zoo.outputs]


def reference_outputs(x: np.ndarray) -> dict[str, np.ndarray]:
    pred, names = reference_predictor()
    return dict(zip(names, pred(x.astype(np.float32)), strict=True))

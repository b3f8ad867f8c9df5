"""Fixtures for the model-zoo tests: fixture files, recipe weights, a predictor factory."""
import json
from pathlib import Path

import numpy as np
import pytest

from layers import OfflinePredictor, PredictConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]


def load_vars_json(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.vars.json").read_text())


def recipe_values(vars_json: dict) -> dict:
    """Rebuild a fixture's weights from the numpy recipes recorded in its vars.json
    (tests/fixtures/README.md), checking each against its recorded float64 sum."""
    values = {}
    for v in vars_json["variables"]:
        r = v["recipe"]
        rs = np.random.RandomState(r["seed"])
        if r["dist"] == "normal":
            a = r["mean"] + r["std"] * rs.standard_normal(size=v["shape"])
        elif r["dist"] == "uniform":
            a = rs.uniform(r["low"], r["high"], size=v["shape"])
        else:
            raise AssertionError(f"unknown recipe distribution {r['dist']!r}")
        a = a.astype(np.float32)
        expected = v["value_sum_float64"]
        assert abs(a.astype(np.float64).sum() - expected) <= 1e-6 * max(1.0, abs(expected)), v["name"]
        values[v["name"]] = a
    return values


@pytest.fixture(scope="session")
def resnet18_weights():
    return recipe_values(load_vars_json("resnet18_imagenet"))


@pytest.fixture
def predictor():
    """``predictor(zoo, weights, output_names=None)``: an OfflinePredictor (strict restore) on the
    zoo model's serving inputs; closed after the test."""
    made = []

    def make(zoo, weights, output_names=None):
        cfg = PredictConfig(model=zoo.model, input_names=zoo.input_names,
                            output_names=output_names or [o.tensor for o in zoo.outputs],
                            session_init=weights, intra_op_threads=2, inter_op_threads=2)
        pred = OfflinePredictor(cfg)
        made.append(pred)
        return pred

    yield make
    for p in made:
        p.close()

"""export_saved_model: a SavedModel that tf.saved_model.load runs with the predictor's outputs."""
import numpy as np
import pytest
import tensorflow as tf

from layers import OfflinePredictor, PredictConfig, export_saved_model
from tests.layers._nets import MnistLinearWrap, TinyNet, fixture, session_config


def _config(**kwargs):
    return PredictConfig(model=MnistLinearWrap(), output_names=["fc1/output", "fc0/output:0"],
                         session_init=fixture("mnist_linearwrap.npz"), session_config=session_config(), **kwargs)


def test_saved_model_gives_the_predictor_outputs(tmp_path):
    x = np.load(fixture("mnist_linearwrap.io.npz"))["input"]
    signature = export_saved_model(_config(), str(tmp_path / "sm"))
    assert signature == {"inputs": {"input": "input:0"},
                         "outputs": {"fc1/output": "fc1/output:0", "fc0/output": "fc0/output:0"}}
    with OfflinePredictor(_config()) as pred:
        expected = pred(x)
    serving = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    out = serving(input=tf.constant(x))
    assert sorted(out) == ["fc0/output", "fc1/output"]
    np.testing.assert_allclose(out["fc1/output"].numpy(), expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["fc0/output"].numpy(), expected[1], rtol=1e-6, atol=1e-6)


def test_export_into_a_non_empty_directory_is_refused(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="sm' already exists"):
        export_saved_model(_config(), str(tmp_path / "sm"))


def test_export_is_strict_like_a_predictor(tmp_path):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"])
    with pytest.raises(ValueError, match="were not restored"):
        export_saved_model(config, str(tmp_path / "sm"))
    assert not (tmp_path / "sm").exists()

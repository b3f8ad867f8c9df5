"""SavedModelPredictor: runs what export_saved_model wrote with the predictor's outputs, per device."""
import numpy as np
import pytest

from layers import OfflinePredictor, PredictConfig, SavedModelPredictor, export_saved_model
from tests.layers._nets import TinyNet, session_config

OUTPUTS = ["fc/output", "bn/output"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rs = np.random.RandomState(0)
    shapes = {"conv/W": (3, 3, 2, 3), "conv/b": (3,), "bn/beta": (3,), "bn/gamma": (3,), "bn/mean/EMA": (3,),
              "bn/variance/EMA": (3,), "fc/W": (48, 3), "fc/b": (3,)}
    weights = {k: rs.uniform(0.5, 1.5, s).astype(np.float32) for k, s in shapes.items()}
    config = PredictConfig(model=TinyNet(), output_names=OUTPUTS, session_init=weights,
                           session_config=session_config())
    path = tmp_path_factory.mktemp("sm") / "tiny"
    export_saved_model(config, str(path))
    x = rs.uniform(-1, 1, (3, 4, 4, 2)).astype(np.float32)
    with OfflinePredictor(config) as pred:
        return str(path), x, dict(zip(OUTPUTS, pred(x), strict=True))


def test_outputs_equal_the_offline_predictor_on_every_replica(exported):
    path, x, expected = exported
    with SavedModelPredictor(path, devices=["/cpu:0", "/cpu:1"], output_names=["bn/output", "fc/output"],
                             intra_op_threads=1, inter_op_threads=1) as pred:
        assert pred.input_names == ["input"] and pred.output_names == ["bn/output", "fc/output"]
        assert pred.input_specs[0].shape.as_list() == [None, 4, 4, 2]
        assert [r.device for r in pred.replicas] == ["/cpu:0", "/cpu:1"]
        for replica in pred.replicas:
            bn, fc = replica(x)
            np.testing.assert_allclose(fc, expected["fc/output"], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(bn, expected["bn/output"], rtol=1e-6, atol=1e-6)


def test_default_outputs_are_every_signature_output_sorted(exported):
    path, x, expected = exported
    with SavedModelPredictor(path) as pred:
        assert pred.output_names == ["bn/output", "fc/output"]
        out = pred.predict_batch({"input": x})
    np.testing.assert_allclose(out["fc/output"], expected["fc/output"], rtol=1e-6, atol=1e-6)


def test_inputs_are_checked_like_a_predictor(exported):
    path, x, _ = exported
    with SavedModelPredictor(path) as pred, pytest.raises(ValueError, match=r"input 'input': expected shape"):
        pred(x[:, :3])


def test_unknown_output_and_signature_are_refused_with_the_choices(exported):
    path, _, _ = exported
    with pytest.raises(ValueError, match=r"\['prob'\] are not in the signature; its outputs: \['bn/output', 'fc/o"):
        SavedModelPredictor(path, output_names=["prob"])
    with pytest.raises(ValueError, match=r"no signature 'predict'; signatures: \['serving_default'\]"):
        SavedModelPredictor(path, signature_name="predict")


def test_a_directory_without_saved_model_pb_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no saved_model.pb"):
        SavedModelPredictor(str(tmp_path))

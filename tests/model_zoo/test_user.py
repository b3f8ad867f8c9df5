"""model_zoo.user without a server: config parsing, and what build() infers from a user ModelDesc."""
import numpy as np
import pytest
import tensorflow as tf

from layers import ModelDesc
from model_zoo import user

SPEC = "tests.service.user_models.mnist_desc:Model"


class FixedBatch(ModelDesc):
    """Its input fixes the batch size: cannot be served."""

    def inputs(self):
        return [tf.TensorSpec((4, 8), tf.float32, "x")]

    def build_graph(self, x):
        tf.identity(x * 2, name="y")


def _parse(tmp_path, **raw):
    return user.parse_config({"architecture": SPEC, "outputs": ["prob"], **raw}, tmp_path, "m/config.json")


def test_outputs_list_drops_the_tensor_suffix_and_mapping_renames(tmp_path):
    assert _parse(tmp_path, outputs=["prob:0", "fc1/output"]).outputs == (("prob", "prob:0"),
                                                                         ("fc1/output", "fc1/output"))
    assert _parse(tmp_path, outputs={"logits": "fc1/output"}).outputs == (("logits", "fc1/output"),)


@pytest.mark.parametrize("raw, message", [
    ({"architecture": "my_module.Model"}, "is not an import spec: expected 'package.module:ClassName'"),
    ({"architecture": "a.b:C; import os"}, "is not an import spec"),
    ({"outputs": []}, "'outputs' must be a non-empty list of names"),
    ({"outputs": ["prob", "prob:0"]}, "names the same tensor twice"),
    ({"image": "rgb"}, "'image' must be one of ['RGB', 'BGR', 'gray']"),
    ({"value_ranges": {"input": [1, 0]}}, "value_ranges['input'] must be [low, high] with low < high"),
    ({"labels": "0123"}, "'labels' must be a non-empty list"),
    ({"python_path": "/usr/lib/python3"}, "'python_path' must be a directory relative to the model repository"),
    ({"python_path": "../.."}, "'python_path' '../..' leaves the model repository"),
    ({"python_path": "absent"}, "'python_path' 'absent' is not a directory"),
    ({"signature": "serving_default"}, "'signature' does not apply"),
])
def test_malformed_keys_are_refused_with_the_expected_form(tmp_path, raw, message):
    with pytest.raises(user.UserModelError, match="m/config.json") as e:
        _parse(tmp_path, **raw)
    assert message in str(e.value)


def test_a_modeldesc_entry_needs_outputs_and_a_saved_model_takes_no_code(tmp_path):
    with pytest.raises(ValueError, match="needs 'outputs'"):
        user.parse_config({"architecture": SPEC}, tmp_path, "m/config.json")
    for key, value in (("options", {"hidden": 3}), ("python_path", "code"), ("inputs", ["input"])):
        with pytest.raises(ValueError, match=f"'{key}'"):
            user.parse_config({"architecture": "saved_model", key: value}, tmp_path, "m/config.json")


def test_build_serves_only_the_inputs_the_outputs_need(tmp_path):
    zoo = user.build(_parse(tmp_path, outputs=["prob", "fc1/output"], options={"hidden": 5},
                            value_ranges={"input": [0, 1]}))
    assert [(i.name, i.dtype, i.shape, i.value_range) for i in zoo.inputs] == [("input", "float32", (8, 8), (0, 1))]
    assert [(o.name, o.tensor) for o in zoo.outputs] == [("prob", "prob:0"), ("fc1/output", "fc1/output:0")]
    assert zoo.model.hidden == 5 and not zoo.takes_images
    explicit = user.build(_parse(tmp_path, inputs=["input", "label"]))
    assert explicit.input_names == ["input", "label"]


@pytest.mark.parametrize("raw, message", [
    ({"inputs": ["label"]}, "the outputs also depend on input(s) ['input'], which 'inputs' leaves out"),
    ({"inputs": ["image"]}, "'inputs' names ['image'], not inputs of the model"),
    ({"labels": ["a", "b", "c"]}, "3 labels, but output 'prob' has 10 columns"),
    ({"image": "RGB"}, "'image' 'RGB' needs input 'input' of shape [H, W, 3]"),
    ({"outputs": ["cost"]}, "output 'cost' is a scalar"),
    ({"value_ranges": {"label": [0, 9]}}, "'value_ranges' names ['label'], not served inputs ['input']"),
    ({"architecture": "tests.model_zoo.test_user:FixedBatch", "outputs": ["y"]},
     "input 'x' has shape [4, 8]; a served input needs a known rank and a first (batch) dimension of None"),
])
def test_build_refuses_what_cannot_be_served(tmp_path, raw, message):
    with pytest.raises(user.UserModelError) as e:
        user.build(_parse(tmp_path, **raw))
    assert message in str(e.value)


def test_gray_image_uploads_are_resized_and_scaled_to_the_value_range(tmp_path):
    zoo = user.build(_parse(tmp_path, image="gray", value_ranges={"input": [-1, 1]}))
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = 255                                             # top half white
    row = zoo.preprocess_image(rgb)                           # box filter 16 -> 8: each pixel is one 2x2 block
    expected = np.full((8, 8), -1.0, np.float32)
    expected[:4] = 1.0
    assert row.dtype == np.float32
    np.testing.assert_allclose(row, expected, atol=1e-5)

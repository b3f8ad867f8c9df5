"""The registry: names, options, and the errors for unknown names and bad values."""
import dataclasses
import json

import pytest

import model_zoo
from model_zoo import ArchitectureConfig, ZooModel, register

EXPECTED = ["cifar10-resnet", "imagenet-resnet", "mnist-convnet", "shufflenet-v2", "vgg16"]


def test_names_lists_every_architecture_sorted():
    assert model_zoo.names() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_get_with_defaults_returns_a_zoo_model_with_metadata(name):
    zoo = model_zoo.get(name)
    assert isinstance(zoo, ZooModel)
    assert zoo.architecture == name
    assert zoo.input_names == ["input"]
    assert zoo.output_names[:2] == ["prob", "logits"]
    assert len(zoo.labels) == zoo.num_classes
    assert zoo.model.input_names == ["input", "label"]
    json.dumps(zoo.describe())          # serialisable metadata


def test_config_dataclass_defaults_are_documented_options():
    cfg = model_zoo.get_config_class("imagenet-resnet")()
    assert cfg.options() == {"depth": 50, "mode": "resnet", "data_format": "NHWC", "input_dtype": "uint8"}
    assert model_zoo.get("imagenet-resnet").options == cfg.options()


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model architecture 'resnet'") as e:
        model_zoo.get("resnet")
    for name in EXPECTED:
        assert name in str(e.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['width'\]") as e:
        model_zoo.get("imagenet-resnet", width=2)
    assert "depth (default 50)" in str(e.value) and "data_format" in str(e.value)


@pytest.mark.parametrize("name, options, choices", [
    ("imagenet-resnet", {"depth": 19}, "18, 34, 50, 101, 152"),
    ("imagenet-resnet", {"mode": "resnext"}, "'resnet', 'preact', 'se'"),
    ("imagenet-resnet", {"data_format": "NWHC"}, "'NHWC', 'NCHW'"),
    ("imagenet-resnet", {"input_dtype": "float16"}, "'uint8', 'float32'"),
    ("cifar10-resnet", {"depth": 18}, "14, 20, 32, 44, 56, 110"),
    ("shufflenet-v2", {"ratio": 2.0}, "0.5, 1.0"),
    ("vgg16", {"norm": "gn"}, "'none', 'bn'"),
])
def test_bad_option_value_lists_valid_choices(name, options, choices):
    (key, value), = options.items()
    with pytest.raises(ValueError, match=f"invalid {key}={value!r}") as e:
        model_zoo.get(name, **options)
    assert f"valid choices: {choices}" in str(e.value)


def test_depth_as_string_is_rejected_not_coerced():
    with pytest.raises(ValueError, match="invalid depth='50'"):
        model_zoo.get("imagenet-resnet", depth="50")


def test_se_mode_needs_a_bottleneck_depth():
    with pytest.raises(ValueError, match="mode='se'.*invalid depth=18.*50, 101, 152"):
        model_zoo.get("imagenet-resnet", depth=18, mode="se")


def test_json_int_is_accepted_for_a_float_option():
    assert model_zoo.get("shufflenet-v2", ratio=1).options["ratio"] == 1


def test_mnist_options_are_range_checked():
    with pytest.raises(ValueError, match=r"invalid dropout_rate=1\.5; expected a number in \[0\.0, 0\.95\]"):
        model_zoo.get("mnist-convnet", dropout_rate=1.5)


def test_register_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="'vgg16' is already registered"):
        @register("vgg16")
        @dataclasses.dataclass(frozen=True)
        class Again(ArchitectureConfig):
            pass


def test_register_refuses_a_class_that_is_not_a_config_dataclass():
    with pytest.raises(ValueError, match="expected a dataclass subclassing ArchitectureConfig"):
        @register("not-a-config")
        class Plain:
            pass
    assert "not-a-config" not in model_zoo.names()


def test_unknown_output_name_lists_valid_outputs():
    with pytest.raises(ValueError, match=r"unknown output 'probs'; valid outputs: \['prob', 'logits'\]"):
        model_zoo.get("mnist-convnet").output("probs")

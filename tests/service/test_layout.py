"""service.repository.zoo_options: which convolution layout a zoo model is built in, per device kind
(the GPU branch is what `make gpu-check` verifies on a real GPU; here the choice itself is checked)."""
from __future__ import annotations

import pytest

from service.repository import zoo_options


@pytest.mark.parametrize("arch,options,devices,expected", [
    ("cifar10-resnet", {}, ["/gpu:0", "/gpu:1"], {"data_format": "NCHW"}),    # every replica on a GPU
    ("imagenet-resnet", {"depth": 18}, ["/gpu:0"], {"depth": 18, "data_format": "NCHW"}),
    ("shufflenet-v2", {}, ["/gpu:0"], {"data_format": "NCHW"}),
    ("cifar10-resnet", {}, ["/cpu:0"], {}),                                   # CPU: NHWC stays the default
    ("cifar10-resnet", {"data_format": "NHWC"}, ["/gpu:0"], {"data_format": "NHWC"}),   # the config wins
    ("mnist-convnet", {}, ["/gpu:0"], {}),                                    # no layout option
    ("no-such-architecture", {}, ["/gpu:0"], {}),                             # left to model_zoo.get's error
])
def test_gpu_replicas_get_nchw_unless_the_config_says_otherwise(arch, options, devices, expected):
    assert zoo_options(arch, options, devices) == expected

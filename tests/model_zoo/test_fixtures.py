"""The zoo models reproduce the outputs real tensorpack computed (tests/fixtures, README.md there).

Tolerances: the fixtures were computed with ``TF_ENABLE_ONEDNN_OPTS=0``; this process runs
TensorFlow's oneDNN kernels (and NCHW through transposes), which sum in a different order. For
ResNet-18 (18 layers, 512-wide dot products) that moves the logits, whose magnitude reaches ~8, by
up to ~4e-6 absolute — a few float32 ulps at that magnitude but far above 1e-5 *relative* for the
logits that happen to be near zero. So logits are compared with ``rtol=1e-5, atol=1e-5`` and
probabilities (all < 1) with ``rtol=1e-5, atol=1e-6``.
"""
import numpy as np
import pytest

import model_zoo

from .conftest import FIXTURES


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_resnet18_reproduces_tensorpack_outputs_from_recipe_weights(data_format, resnet18_weights, predictor):
    io = np.load(FIXTURES / "resnet18_imagenet.io.npz")
    x = io["input"]
    if data_format == "NCHW":
        x = x[:2]                                   # NCHW runs through transposes on CPU: keep it cheap
    zoo = model_zoo.get("imagenet-resnet", depth=18, input_dtype="float32", data_format=data_format)
    pred = predictor(zoo, resnet18_weights, ["linear/output", "prob", "gap/output"])
    logits, prob, gap = pred(x)
    n = len(x)
    np.testing.assert_allclose(gap, io["gap/output:0"][:n], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, io["linear/output:0"][:n], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prob, io["prob:0"][:n], rtol=1e-5, atol=1e-6)
    assert pred.restore_report.missing == [] and pred.restore_report.unused == []


def test_resnet18_uint8_input_gives_the_same_outputs_as_float32(resnet18_weights, predictor):
    """The default uint8 input is cast inside image_preprocess: integral pixels give equal results."""
    io = np.load(FIXTURES / "resnet18_imagenet.io.npz")
    x = np.clip(np.rint(io["input"][:1]), 0, 255)
    outs = [predictor(model_zoo.get("imagenet-resnet", depth=18, input_dtype=dt), resnet18_weights,
                      ["prob"])(x.astype(dt))[0] for dt in ("uint8", "float32")]
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("weights", ["resnet_cifar.npz", "resnet_cifar/checkpoint"])
def test_cifar_resnet_depth14_reproduces_tensorpack_outputs(weights, predictor):
    io = np.load(FIXTURES / "resnet_cifar.io.npz")
    zoo = model_zoo.get("cifar10-resnet", depth=14)
    pred = predictor(zoo, str(FIXTURES / weights), ["linear/output", "output", "bnlast/output", "res2.0/pool/output"])
    logits, prob, bnlast, pool = pred(io["input"])
    np.testing.assert_allclose(pool, io["res2.0/pool/output:0"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bnlast, io["bnlast/Relu:0"], rtol=1e-5, atol=1e-5)   # tensorpack: bnlast/Relu
    np.testing.assert_allclose(logits, io["linear/output:0"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prob, io["output:0"], rtol=1e-5, atol=1e-6)


def test_cifar_resnet_nchw_reproduces_tensorpack_outputs(predictor):
    io = np.load(FIXTURES / "resnet_cifar.io.npz")
    zoo = model_zoo.get("cifar10-resnet", depth=14, data_format="NCHW")
    (prob,) = predictor(zoo, str(FIXTURES / "resnet_cifar.npz"), ["output"])(io["input"])
    np.testing.assert_allclose(prob, io["output:0"], rtol=1e-5, atol=1e-6)


def test_mnist_convnet_is_the_tutorial_network(predictor):
    """The fixture feeds the tutorial net [N,28,28,1] in [0,1] directly; mnist-convnet takes [N,28,28]
    in [0,1] and maps it with x*2-1, so feeding (x+1)/2 reaches the same first layer."""
    io = np.load(FIXTURES / "mnist_linearwrap.io.npz")
    x = ((io["input"][..., 0] + 1) / 2).astype(np.float32)
    zoo = model_zoo.get("mnist-convnet")
    logits, hidden = predictor(zoo, str(FIXTURES / "mnist_linearwrap.npz"), ["fc1/output", "fc0/output"])(x)
    np.testing.assert_allclose(hidden, io["fc0/output:0"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, io["fc1/output:0"], rtol=1e-5, atol=1e-5)

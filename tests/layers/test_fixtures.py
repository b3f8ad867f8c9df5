"""The tensorpack-made fixtures (tests/fixtures/README.md): graphs built with ``layers`` have the same
variables, restore tensorpack's .npz dumps and TF checkpoints, and reproduce every reference tensor.

The loaders here are deliberately tiny test helpers (the real SmartInit lives in layers/sessinit.py)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from layers import TowerContext
from tests.layers._nets import CifarResNet, MnistLinearWrap
from tests.layers.reference import assert_allclose_rel

tfv1 = tf.compat.v1

#: tensorpack's BNReLU('bnlast', x) returns ``bnlast/Relu``; layers names it ``bnlast/output`` (same values).
RENAMED_TENSORS = {"bnlast/Relu:0": "bnlast/output:0"}


# --------------------------------------------------------------------------------------------
# the two networks, written as in tensorpack
# --------------------------------------------------------------------------------------------

def _build(desc):
    """Placeholder ``input`` + the network, under TowerContext('', is_training=False), as the fixtures were made."""
    (image,) = desc.create_placeholders()
    with TowerContext("", is_training=False):
        return image, desc.build_graph(image)


def build_mnist_linearwrap():
    """The "Symbolic Layers" tutorial network (fixture ``mnist_linearwrap``), see tests/layers/_nets.py."""
    return _build(MnistLinearWrap())


def build_cifar_resnet(n=2):
    """tensorpack's examples/ResNet/cifar10-resnet.py network (fixture ``resnet_cifar``), see tests/layers/_nets.py."""
    return _build(CifarResNet(n))


BUILDERS = {"mnist_linearwrap": build_mnist_linearwrap, "resnet_cifar": build_cifar_resnet}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _vars_json(fixtures_dir, model):
    return json.loads((fixtures_dir / f"{model}.vars.json").read_text())


def _npz_values(path):
    """tensorpack's dump-model-params .npz: keys are tensor names with ':0'."""
    with np.load(path) as f:
        return {k[:-2] if k.endswith(":0") else k: f[k] for k in f.files}


def _checkpoint_values(ckpt_dir):
    """A TF checkpoint as tensorpack's ModelSaver writes it: keys are op names without ':0'."""
    reader = tf.train.load_checkpoint(str(ckpt_dir))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def _restore(sess, assign_values, values):
    """Assign every graph variable from ``values``; fail on a missing or extra key."""
    names = {v.op.name for v in sess.graph.get_collection(tfv1.GraphKeys.GLOBAL_VARIABLES)}
    assert names == set(values), (sorted(names ^ set(values)))
    assign_values(sess, values)


def _check_outputs(sess, image, io_path):
    with np.load(io_path) as io:
        refs = {k: io[k] for k in io.files}
    names = [k for k in refs if k != "input"]
    fetches = [sess.graph.get_tensor_by_name(RENAMED_TENSORS.get(k, k)) for k in names]
    outs = sess.run(fetches, {image: refs["input"]})
    for name, out in zip(names, outs, strict=True):
        assert out.shape == refs[name].shape, name
        assert_allclose_rel(out, refs[name], rtol=1e-5, atol_scale=1e-5)
    return names


@pytest.fixture
def built(graph, request):
    """(image placeholder, output) of the model named by the test's ``model`` parameter, in ``graph``."""
    return BUILDERS[request.param]()


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("built", ["mnist_linearwrap", "resnet_cifar"], indirect=True)
def test_variables_have_tensorpack_names_shapes_and_trainability(graph, fixtures_dir, built, request):
    model = request.node.callspec.params["built"]
    expected = {v["name"]: (v["shape"], v["dtype"], v["trainable"]) for v in _vars_json(fixtures_dir, model)["variables"]}
    actual = {v.name: (v.shape.as_list(), v.dtype.base_dtype.name, v in tfv1.trainable_variables())
              for v in tfv1.global_variables()}
    assert actual == expected


@pytest.mark.parametrize("built", ["mnist_linearwrap", "resnet_cifar"], indirect=True)
def test_named_tensors_exist_with_tensorpack_shapes(graph, fixtures_dir, built, request):
    model = request.node.callspec.params["built"]
    info = _vars_json(fixtures_dir, model)
    for t in info["named_tensors"]:
        tensor = graph.get_tensor_by_name(RENAMED_TENSORS.get(t["name"], t["name"]))
        assert tensor.shape.as_list() == t["static_shape"], t["name"]
    for name in info["outputs"].values():
        assert graph.get_tensor_by_name(name).op.type == {"fc1/output:0": "Identity", "linear/output:0": "Identity",
                                                         "output:0": "Softmax"}[name]


@pytest.mark.parametrize("built", ["mnist_linearwrap"], indirect=True)
def test_mnist_linearwrap_npz_reproduces_every_reference_tensor(fixtures_dir, make_session, assign_values, built):
    image, _ = built
    sess = make_session(initialize=False)
    _restore(sess, assign_values, _npz_values(fixtures_dir / "mnist_linearwrap.npz"))
    checked = _check_outputs(sess, image, fixtures_dir / "mnist_linearwrap.io.npz")
    assert "fc1/output:0" in checked and "Mul:0" in checked


@pytest.mark.parametrize("built", ["resnet_cifar"], indirect=True)
def test_resnet_cifar_npz_reproduces_every_reference_tensor(fixtures_dir, make_session, assign_values, built):
    image, _ = built
    sess = make_session(initialize=False)
    _restore(sess, assign_values, _npz_values(fixtures_dir / "resnet_cifar.npz"))
    checked = _check_outputs(sess, image, fixtures_dir / "resnet_cifar.io.npz")
    assert {"output:0", "linear/output:0", "res3.0/pool/output:0", "bnlast/Relu:0"} <= set(checked)


@pytest.mark.parametrize("built", ["resnet_cifar"], indirect=True)
def test_resnet_cifar_checkpoint_reproduces_every_reference_tensor(fixtures_dir, make_session, assign_values,
                                                                   built):
    image, _ = built
    sess = make_session(initialize=False)
    values = _checkpoint_values(fixtures_dir / "resnet_cifar")
    assert not any(k.endswith(":0") for k in values)
    _restore(sess, assign_values, values)
    _check_outputs(sess, image, fixtures_dir / "resnet_cifar.io.npz")


def test_resnet_cifar_checkpoint_and_npz_hold_the_same_values(fixtures_dir):
    npz = _npz_values(fixtures_dir / "resnet_cifar.npz")
    ckpt = _checkpoint_values(fixtures_dir / "resnet_cifar")
    assert set(npz) == set(ckpt)
    for k in npz:
        np.testing.assert_array_equal(npz[k], ckpt[k], err_msg=k)

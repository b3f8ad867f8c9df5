"""LinearWrap, and the tutorial's first block: the LinearWrap chain equals its written-out form
(same variables, same outputs given the same weights), with new and with old argument names."""
import uuid

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    Conv2D,
    Dropout,
    FullyConnected,
    LinearWrap,
    MaxPooling,
    TowerContext,
    argscope,
    layer_register,
)

tfv1 = tf.compat.v1


def _x(shape=(None, 8, 8, 3)):
    return tfv1.placeholder(tf.float32, list(shape), name="input")


def test_layer_attribute_calls_the_layer_with_the_wrapped_tensor(graph):
    lw = LinearWrap(_x()).Conv2D("conv", 4, 3)
    assert isinstance(lw, LinearWrap)
    assert lw().name == "conv/output:0"
    assert lw.tensor() is lw()
    assert lw().variables.W.shape.as_list() == [3, 3, 3, 4]


def test_tf_attribute_walks_submodules_and_calls_with_the_tensor_first(graph):
    x = _x()
    out = LinearWrap(x).tf.nn.relu().tf.multiply(0.5)()
    assert out.op.type == "Mul"
    assert out.op.inputs[0].op.type == "Relu"
    assert out.op.inputs[0].op.inputs[0] is x


def test_apply_calls_func_with_the_tensor_first(graph):
    calls = []

    def func(t, a, k=None):
        calls.append((t, a, k))
        return tf.identity(t, name="applied")

    x = _x()
    out = LinearWrap(x).apply(func, 1, k=2)()
    assert calls == [(x, 1, 2)]
    assert out.name == "applied:0"


def test_apply2_calls_func_with_the_tensor_second(graph):
    out = LinearWrap(_x()).apply2(Conv2D, "conv", 4, 3)()
    assert out.name == "conv/output:0"


def test_print_tensor_prints_and_returns_the_wrapper(graph, capsys):
    lw = LinearWrap(_x())
    assert lw.print_tensor() is lw
    printed = capsys.readouterr().out
    assert "input:0" in printed and "Tensor" in printed


def test_unknown_attribute_raises(graph):
    with pytest.raises(AttributeError, match="'NotALayer' is neither a registered layer nor 'tf'"):
        LinearWrap(_x()).NotALayer("x")


def test_layers_with_an_optional_name_take_it_or_not(graph):
    x = _x((None, 6))
    bare = LinearWrap(x).Maxout(2)()
    named = LinearWrap(x).Maxout("mo", 3)()
    assert bare.shape.as_list() == [None, 3] and bare.name == "output:0"
    assert named.shape.as_list() == [None, 2] and named.name == "mo/output:0"


def test_layers_registered_later_are_found(graph):
    def scaled(x, factor=2.0):
        return tf.multiply(x, factor, name="output")

    scaled.__name__ = "Scaled" + uuid.uuid4().hex[:8]           # unique name in the process-wide registry
    layer_register()(scaled)
    out = getattr(LinearWrap(_x()), scaled.__name__)("s", factor=3.0)()
    assert out.name == "s/output:0"


# --------------------------------------------------------------------------------------------
# the tutorial's first block
# --------------------------------------------------------------------------------------------

def _shift(t, amount):
    return t + amount


def _block1(style):
    """Build tutorial block 1 in a fresh graph; return (graph, input, output)."""
    g = tf.Graph()
    with g.as_default(), TowerContext("", is_training=False):
        image = _x((None, 28, 28, 1))
        if style == "linearwrap":
            with argscope(Conv2D, filters=32, kernel_size=3, activation=tf.nn.relu):
                out = (LinearWrap(image)
                       .Conv2D("conv0")
                       .MaxPooling("pool0", 2)
                       .Conv2D("conv1", padding="SAME")
                       .Conv2D("conv2", kernel_size=5)
                       .FullyConnected("fc0", 512, activation=tf.nn.relu)
                       .Dropout("dropout", rate=0.5)
                       .tf.multiply(0.5)
                       .apply(_shift, 0.25)
                       .FullyConnected("fc1", units=10, activation=tf.identity)())
        elif style == "linearwrap_old_names":
            with argscope(Conv2D, out_channel=32, kernel_shape=3, nl=tf.nn.relu):
                out = (LinearWrap(image)
                       .Conv2D("conv0")
                       .MaxPooling("pool0", 2)
                       .Conv2D("conv1", padding="SAME")
                       .Conv2D("conv2", kernel_shape=5)
                       .FullyConnected("fc0", 512, nl=tf.nn.relu)
                       .Dropout("dropout", 0.5)
                       .tf.multiply(0.5)
                       .apply(_shift, 0.25)
                       .FullyConnected("fc1", out_dim=10, nl=tf.identity)())
        else:
            net = Conv2D("conv0", image, 32, 3, activation=tf.nn.relu)
            net = MaxPooling("pool0", net, 2)
            net = Conv2D("conv1", net, 32, 3, padding="SAME", activation=tf.nn.relu)
            net = Conv2D("conv2", net, 32, 5, activation=tf.nn.relu)
            net = FullyConnected("fc0", net, 512, activation=tf.nn.relu)
            net = Dropout("dropout", net, rate=0.5)
            net = tf.multiply(net, 0.5)
            net = _shift(net, 0.25)
            out = FullyConnected("fc1", net, 10, activation=tf.identity)
    return g, image, out


def _variables(g):
    return {v.name: v.shape.as_list() for v in g.get_collection(tfv1.GraphKeys.GLOBAL_VARIABLES)}


@pytest.mark.parametrize("style", ["linearwrap", "linearwrap_old_names"])
def test_tutorial_block1_equals_its_written_out_form(make_session, assign_values, rng, style):
    g_chain, x_chain, out_chain = _block1(style)
    g_ref, x_ref, out_ref = _block1("written_out")
    variables = _variables(g_chain)
    assert variables == _variables(g_ref)
    assert variables == {
        "conv0/W:0": [3, 3, 1, 32], "conv0/b:0": [32], "conv1/W:0": [3, 3, 32, 32], "conv1/b:0": [32],
        "conv2/W:0": [5, 5, 32, 32], "conv2/b:0": [32], "fc0/W:0": [6272, 512], "fc0/b:0": [512],
        "fc1/W:0": [512, 10], "fc1/b:0": [10]}
    assert out_chain.name == out_ref.name == "fc1/output:0"
    weights = {name: 0.05 * rng.standard_normal(shape) for name, shape in variables.items()}
    xv = rng.random((3, 28, 28, 1))
    results = []
    for g, x, out in ((g_chain, x_chain, out_chain), (g_ref, x_ref, out_ref)):
        sess = make_session(graph=g)
        assign_values(sess, weights)
        results.append(sess.run(out, {x: xv}))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-6)
    assert results[0].shape == (3, 10)

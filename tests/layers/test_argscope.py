"""argscope: nesting, precedence, restoration, old names, validation, get_arg_scope,
enable_argscope_for_function/module, and the tutorial's NCHW block."""
import logging
import threading
import types

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    Conv2D,
    FullyConnected,
    MaxPooling,
    argscope,
    enable_argscope_for_function,
    enable_argscope_for_module,
    get_arg_scope,
)

tfv1 = tf.compat.v1


def _x(shape=(None, 8, 8, 3)):
    return tfv1.placeholder(tf.float32, list(shape))


def test_nested_argscopes_accumulate(graph):
    with argscope(Conv2D, filters=4), argscope(Conv2D, kernel_size=5):
        assert get_arg_scope()["Conv2D"] == {"filters": 4, "kernel_size": 5}
        y = Conv2D("conv", _x())
    assert y.variables.W.shape.as_list() == [5, 5, 3, 4]


def test_inner_argscope_wins_and_outer_value_returns_on_exit(graph):
    with argscope(Conv2D, filters=4, kernel_size=3):
        with argscope(Conv2D, filters=8):
            inner = Conv2D("inner", _x())
        outer = Conv2D("outer", _x())
    assert inner.shape.as_list()[-1] == 8
    assert outer.shape.as_list()[-1] == 4


def test_explicit_argument_beats_every_argscope(graph):
    with argscope(Conv2D, filters=4, kernel_size=3, padding="valid"):
        with argscope(Conv2D, padding="valid"):
            y = Conv2D("conv", _x(), padding="same")
    assert y.shape.as_list() == [None, 8, 8, 4]


def test_argscope_state_is_restored_after_an_exception_in_the_block():
    with pytest.raises(RuntimeError, match="boom"):
        with argscope(Conv2D, filters=4):
            raise RuntimeError("boom")
    assert "Conv2D" not in get_arg_scope()


def test_get_arg_scope_outside_any_argscope_is_an_empty_defaultdict():
    scope = get_arg_scope()
    assert dict(scope) == {}
    assert scope["Conv2D"] == {}


def test_argscope_on_a_list_of_layers_sets_each(graph):
    with argscope([Conv2D, MaxPooling], data_format="NCHW"):
        assert get_arg_scope()["Conv2D"]["data_format"] == "NCHW"
        assert get_arg_scope()["MaxPooling"]["data_format"] == "NCHW"


def test_old_argument_names_work_inside_argscope(graph):
    with argscope(Conv2D, out_channel=6, kernel_shape=5, stride=2, nl=tf.nn.relu):
        y = Conv2D("conv", _x())
    assert y.variables.W.shape.as_list() == [5, 5, 3, 6]
    assert y.shape.as_list() == [None, 4, 4, 6]
    assert y.op.inputs[0].op.type == "Relu"


def test_explicit_new_name_beats_old_name_from_argscope(graph):
    with argscope(Conv2D, kernel_shape=5):
        y = Conv2D("conv", _x(), 4, kernel_size=3)
    assert y.variables.W.shape.as_list() == [3, 3, 3, 4]


def test_argscope_on_a_plain_function_is_a_type_error_naming_it():
    def my_helper(x, k=1):
        return x

    with pytest.raises(TypeError, match="my_helper.*is not a layer"):
        with argscope(my_helper, k=2):
            pass


def test_argscope_with_an_argument_the_layer_does_not_accept_is_an_error(graph):
    with pytest.raises(TypeError, match=r"argscope.*FullyConnected.*\['data_format'\]"):
        with argscope([Conv2D, FullyConnected], data_format="NCHW"):
            pass
    assert get_arg_scope()["Conv2D"] == {}


def test_argscope_rejects_an_old_name_whose_argument_the_layer_lacks(graph):
    with pytest.raises(TypeError, match=r"argscope.*MaxPooling.*\['W_init'\]"):
        with argscope(MaxPooling, W_init=tfv1.zeros_initializer()):
            pass


def test_argscope_is_per_thread(graph):
    seen = {}

    def other_thread():
        seen["scope"] = dict(get_arg_scope())

    with argscope(Conv2D, filters=4):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["scope"] == {}


# --------------------------------------------------------------------------------------------
# enable_argscope_for_function / enable_argscope_for_module
# --------------------------------------------------------------------------------------------

def scale_by(x, factor=1.0):
    return x * factor


def test_enable_argscope_for_function_merges_defaults_and_explicit_wins(graph, make_session):
    f = enable_argscope_for_function(scale_by, log_shape=False)
    x = tf.constant([1.0, 2.0])
    with argscope(f, factor=3.0):
        a = f(x)
        b = f(x, factor=5.0)
    c = f(x)
    sess = make_session()
    np.testing.assert_allclose(sess.run([a, b, c]), [[3, 6], [5, 10], [1, 2]])
    assert f.__name__ == "scale_by"


def test_enable_argscope_for_function_logs_shapes_once(graph, caplog):
    f = enable_argscope_for_function(scale_by)
    with caplog.at_level(logging.INFO, logger="layers"):
        f(tfv1.placeholder(tf.float32, [None, 3]))
        f(tfv1.placeholder(tf.float32, [None, 3]))
    msgs = [r.getMessage() for r in caplog.records if "scale_by" in r.getMessage()]
    assert msgs == ["scale_by: [None, 3] --> [None, 3]"]


def test_enable_argscope_for_function_rejects_non_callables():
    with pytest.raises(TypeError, match="enable_argscope_for_function.*int"):
        enable_argscope_for_function(3)


def _add(x, y=0.0):
    return x + y


def _private(x, y=0.0):
    return x - y


def test_enable_argscope_for_module_patches_public_functions(graph, make_session):
    mod = types.ModuleType("my_ops")
    mod.add = _add
    mod._private = _private
    mod.constant = 7
    enable_argscope_for_module(mod, log_shape=False)
    assert getattr(mod.add, "__argscope_enabled__", False)
    assert mod._private is _private and mod.constant == 7
    with argscope(mod.add, y=10.0):
        out = mod.add(tf.constant(1.0))
    assert make_session().run(out) == pytest.approx(11.0)
    with pytest.raises(TypeError, match="_private"):
        with argscope(mod._private, y=1.0):
            pass


# --------------------------------------------------------------------------------------------
# the tutorial's NCHW block
# --------------------------------------------------------------------------------------------

def _nchw_block(style):
    """Tutorial block 2 on an NHWC image transposed to NCHW; ``style`` says how data_format is given."""
    g = tf.Graph()
    with g.as_default():
        image = tfv1.placeholder(tf.float32, [None, 8, 8, 3], name="input")
        if style == "nhwc":
            net = Conv2D("conv3", image, 64, 3)
            net = MaxPooling("pool3", net, 2)
            return g, image, tf.transpose(net, [0, 3, 1, 2])
        net = tf.transpose(image, [0, 3, 1, 2])
        if style == "argscope":
            with argscope([Conv2D, MaxPooling], data_format="NCHW"):
                net = Conv2D("conv3", net, 64, 3)
                net = MaxPooling("pool3", net, 2)
        else:
            net = Conv2D("conv3", net, 64, 3, data_format="NCHW")
            net = MaxPooling("pool3", net, 2, data_format="NCHW")
        return g, image, net


def test_tutorial_nchw_block_argscope_equals_explicit_and_nhwc(make_session, assign_values, rng):
    built = {style: _nchw_block(style) for style in ("argscope", "explicit", "nhwc")}
    shapes = {style: {v.name: v.shape.as_list() for v in g.get_collection(tfv1.GraphKeys.GLOBAL_VARIABLES)}
              for style, (g, _, _) in built.items()}
    assert shapes["argscope"] == shapes["explicit"] == shapes["nhwc"] == {
        "conv3/W:0": [3, 3, 3, 64], "conv3/b:0": [64]}
    weights = {"conv3/W": rng.standard_normal((3, 3, 3, 64)), "conv3/b": rng.standard_normal(64)}
    xv = rng.standard_normal((2, 8, 8, 3))
    outs = {}
    for style, (g, image, out) in built.items():
        assert out.shape.as_list() == [None, 64, 4, 4]
        sess = make_session(graph=g)
        assign_values(sess, weights)
        outs[style] = sess.run(out, {image: xv})
    np.testing.assert_allclose(outs["argscope"], outs["explicit"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs["argscope"], outs["nhwc"], rtol=1e-5, atol=1e-5)

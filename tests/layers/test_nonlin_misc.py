"""BNReLU, PReLU, Maxout, Dropout (incl. the keep-probability trap) and ConcatWith."""
import numpy as np
import pytest
import tensorflow as tf

from layers import BNReLU, ConcatWith, Conv2D, Dropout, Maxout, PReLU, TowerContext, argscope

tfv1 = tf.compat.v1


# --------------------------------------------------------------------------------------------
# BNReLU
# --------------------------------------------------------------------------------------------

def test_bnrelu_as_activation_puts_batchnorm_variables_under_conv_bn(graph):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    with TowerContext("", is_training=True):
        y = Conv2D("conv", x, 5, 3, activation=BNReLU, use_bias=False)
    assert {v.op.name for v in tfv1.global_variables()} == {
        "conv/W", "conv/bn/beta", "conv/bn/gamma", "conv/bn/mean/EMA", "conv/bn/variance/EMA"}
    assert y.name == "conv/output:0"
    assert y.op.inputs[0].op.type == "Relu"


def test_bnrelu_with_a_name_opens_a_scope_and_names_its_output(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 4])
    with TowerContext("", is_training=True):
        y = BNReLU("bnrelu", x)
    assert y.name == "bnrelu/output:0"
    assert {v.op.name for v in tfv1.trainable_variables()} == {"bnrelu/bn/beta", "bnrelu/bn/gamma"}
    xv = rng.standard_normal((6, 4))
    ref = np.maximum((xv - xv.mean(0)) / np.sqrt(xv.var(0) + 1e-5), 0)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_bnrelu_bare_call_uses_the_current_scope(graph):
    x = tfv1.placeholder(tf.float32, [None, 4])
    with TowerContext("", is_training=False), tfv1.variable_scope("block"):
        BNReLU(x)
    assert {v.op.name for v in tfv1.trainable_variables()} == {"block/bn/beta", "block/bn/gamma"}


def test_bnrelu_needs_a_tower_context(graph):
    with pytest.raises(RuntimeError, match=r"wrap the model in `with TowerContext\('', is_training=\.\.\.\)`"):
        BNReLU("bnrelu", tfv1.placeholder(tf.float32, [None, 4]))


# --------------------------------------------------------------------------------------------
# PReLU
# --------------------------------------------------------------------------------------------

def test_prelu_has_a_scalar_alpha_initialised_to_init(graph, make_session):
    y = PReLU("prelu", tfv1.placeholder(tf.float32, [None, 3]), 0.25)
    assert {v.name: v.shape.as_list() for v in tfv1.global_variables()} == {"prelu/alpha:0": []}
    assert make_session().run(y.variables.alpha) == pytest.approx(0.25)
    assert y.name == "prelu/output:0"


def test_prelu_default_alpha_and_values(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 5])
    y = PReLU("prelu", x)
    xv = rng.standard_normal((4, 5))
    assert y.dtype == tf.float64
    np.testing.assert_allclose(make_session().run(y, {x: xv}), np.where(xv > 0, xv, 0.001 * xv), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Maxout
# --------------------------------------------------------------------------------------------

def test_maxout_2d_takes_the_max_of_each_group_of_num_unit_channels(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 6])
    y = Maxout(x, 3)
    xv = rng.standard_normal((4, 6))
    assert y.shape.as_list() == [None, 2]
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv.reshape(4, 2, 3).max(-1), rtol=1e-6)


def test_maxout_4d_with_unknown_spatial_dims(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, None, None, 8])
    y = Maxout("maxout", x, num_unit=2)
    assert y.name == "maxout/output:0"
    assert y.shape.as_list()[-1] == 4
    xv = rng.standard_normal((2, 3, 5, 8))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv.reshape(2, 3, 5, 4, 2).max(-1), rtol=1e-6)


def test_maxout_channels_not_divisible_is_an_error_naming_the_values(graph):
    with pytest.raises(ValueError, match=r"Maxout.*channels \(7\).*num_unit \(2\)"):
        Maxout(tfv1.placeholder(tf.float32, [None, 7]), 2)


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------

def _kept_fraction_and_scale(sess, y):
    out = sess.run(y)
    kept = out != 0
    return kept.mean(), np.unique(out[kept])


def test_dropout_first_positional_argument_is_the_keep_probability(graph, make_session):
    x = tf.ones([200000])
    with pytest.warns(UserWarning, match="KEEP"):
        y = Dropout(x, 0.8, training=True)
    frac, values = _kept_fraction_and_scale(make_session(), y)
    assert frac == pytest.approx(0.8, abs=0.01)
    np.testing.assert_allclose(values, [1 / 0.8], rtol=1e-6)


def test_dropout_keep_prob_keyword_is_the_keep_probability(graph, make_session):
    with pytest.warns(UserWarning, match="KEEP"):
        y = Dropout(tf.ones([200000]), keep_prob=0.9, training=True)
    frac, _ = _kept_fraction_and_scale(make_session(), y)
    assert frac == pytest.approx(0.9, abs=0.01)


def test_dropout_rate_is_the_drop_probability(graph, make_session):
    y = Dropout(tf.ones([200000]), rate=0.8, training=True)
    frac, values = _kept_fraction_and_scale(make_session(), y)
    assert frac == pytest.approx(0.2, abs=0.01)
    np.testing.assert_allclose(values, [5.0], rtol=1e-6)


def test_dropout_rate_may_be_a_tensor_as_in_cifar_convnet(graph, make_session):
    rate = tfv1.placeholder(tf.float32, [])         # tensorpack's cifar-convnet: tf.constant(0.5 if training else 0.)
    y = Dropout(tf.ones([200000]), rate=rate, training=True)
    sess = make_session()
    kept = sess.run(y, {rate: 0.75})
    assert np.mean(kept > 0) == pytest.approx(0.25, abs=0.01)
    np.testing.assert_array_equal(sess.run(y, {rate: 0.0}), 1.0)


def test_dropout_default_rate_is_one_half_and_0_5_positional_does_not_warn(graph, make_session):
    y_default = Dropout(tf.ones([200000]), training=True)
    y_half = Dropout(tf.ones([200000]), 0.5, training=True)    # pytest turns a warning into an error
    sess = make_session()
    assert _kept_fraction_and_scale(sess, y_default)[0] == pytest.approx(0.5, abs=0.01)
    assert _kept_fraction_and_scale(sess, y_half)[0] == pytest.approx(0.5, abs=0.01)


def test_dropout_reads_training_from_the_tower(graph):
    x = tfv1.placeholder(tf.float32, [None, 4])
    with TowerContext("", is_training=False):
        y_inf = Dropout("drop", x, rate=0.5)
    with TowerContext("train", is_training=True):
        y_train = Dropout("drop", x, rate=0.5)
    assert y_inf is x                  # inference adds no op
    assert y_train is not x


def test_dropout_old_name_is_training(graph):
    x = tfv1.placeholder(tf.float32, [None, 4])
    assert Dropout(x, is_training=False) is x


def test_dropout_without_tower_or_training_says_how_to_fix_it(graph):
    with pytest.raises(RuntimeError, match=r"Dropout.*wrap the model in `with TowerContext\('', is_training=\.\.\.\)`"):
        Dropout(tfv1.placeholder(tf.float32, [None, 4]))


def test_dropout_keep_prob_and_rate_together_is_an_error(graph):
    with pytest.raises(ValueError, match=r"Dropout.*keep_prob.*rate"):
        Dropout(tfv1.placeholder(tf.float32, [None, 4]), keep_prob=0.5, rate=0.5, training=True)


def test_dropout_training_must_be_a_python_bool(graph):
    with pytest.raises(TypeError, match=r"Dropout.*training.*bool"):
        Dropout(tfv1.placeholder(tf.float32, [None, 4]), training=tf.constant(True))


def test_dropout_rate_out_of_range_is_an_error(graph):
    with pytest.raises(ValueError, match=r"Dropout.*rate.*1.5"):
        Dropout(tfv1.placeholder(tf.float32, [None, 4]), rate=1.5, training=True)


def test_dropout_explicit_rate_beats_argscope(graph, make_session):
    with argscope(Dropout, rate=0.9):
        y = Dropout(tf.ones([200000]), rate=0.1, training=True)
    assert _kept_fraction_and_scale(make_session(), y)[0] == pytest.approx(0.9, abs=0.01)


def test_dropout_keeps_dtype_and_shape(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, None, 3])
    y = Dropout(x, rate=0.3, training=True)
    assert y.dtype == tf.float64 and y.shape.as_list() == [None, None, 3]
    assert make_session().run(y, {x: rng.standard_normal((2, 5, 3))}).shape == (2, 5, 3)


# --------------------------------------------------------------------------------------------
# ConcatWith
# --------------------------------------------------------------------------------------------

def test_concat_with_one_tensor_and_a_list(graph, make_session, rng):
    a, b, c = (rng.standard_normal((2, 3, n)) for n in (1, 2, 3))
    ta, tb, tc = (tf.constant(v) for v in (a, b, c))
    one = ConcatWith(ta, tb, 2)
    many = ConcatWith("concat", ta, [tb, tc], dim=2)
    sess = make_session()
    np.testing.assert_array_equal(sess.run(one), np.concatenate([a, b], 2))
    np.testing.assert_array_equal(sess.run(many), np.concatenate([a, b, c], 2))
    assert many.shape.as_list() == [2, 3, 6]


# --------------------------------------------------------------------------------------------
# shapes and dtype with unknown batch and spatial dimensions
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,channels", [
    (lambda x: BNReLU("bnrelu", x), 4),
    (lambda x: PReLU("prelu", x), 4),
    (lambda x: Maxout("maxout", x, 2), 2),
    (lambda x: Dropout("drop", x, rate=0.5, training=True), 4),
    (lambda x: ConcatWith("concat", x, [x, x], 3), 12),
])
def test_shapes_and_float64_with_unknown_batch_and_spatial_dims(graph, make_session, rng, build, channels):
    x = tfv1.placeholder(tf.float64, [None, None, None, 4])
    with TowerContext("", is_training=True):
        y = build(x)
    assert y.shape.as_list() == [None, None, None, channels]
    assert y.dtype == tf.float64
    out = make_session().run(y, {x: rng.standard_normal((3, 5, 2, 4))})
    assert out.shape == (3, 5, 2, channels)


def test_prelu_and_maxout_explicit_arguments_beat_argscope(graph, make_session):
    x = tfv1.placeholder(tf.float32, [None, 6])
    with argscope(PReLU, init=0.5), argscope(Maxout, num_unit=3):
        p = PReLU("prelu", x, 0.2)
        m = Maxout(x, 2)
    assert make_session().run(p.variables.alpha) == pytest.approx(0.2)
    assert m.shape.as_list() == [None, 3]

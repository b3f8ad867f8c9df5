"""BatchNorm: variables and collections, training/inference numerics (incl. TF's fused-kernel quirks on
4-D input), EMA updates after k steps vs a NumPy momentum blend, ema_update modes, towers, frozen BN,
virtual batches, argument handling."""
import numpy as np
import pytest
import tensorflow as tf

from layers import BatchNorm, PredictTowerContext, TowerContext, TrainTowerContext, argscope
from tests.layers.reference import batch_norm as bn_ref

tfv1 = tf.compat.v1
UPDATE_OPS = tfv1.GraphKeys.UPDATE_OPS
FUSED_MIN_EPS = 1.001e-5


def _data(rng, shape, channel_axis=-1):
    """Per-channel different means and scales, so a mix-up between channels shows."""
    c = shape[channel_axis]
    bshape = [1] * len(shape)
    bshape[channel_axis] = c
    loc = np.linspace(-2, 3, c).reshape(bshape)
    scale = np.linspace(0.5, 2, c).reshape(bshape)
    return loc + scale * rng.standard_normal(shape)


def _reduce_axes(ndim, channel_axis):
    return tuple(a for a in range(ndim) if a != channel_axis % ndim)


def _ema_blend(batches, channel_axis, momentum=0.9, unbiased=True):
    """The moving averages after one update per batch, starting from mean 0 / variance 1."""
    mean, var = 0.0, 1.0
    for b in batches:
        axes = _reduce_axes(b.ndim, channel_axis)
        n = int(np.prod([b.shape[a] for a in axes]))
        bvar = b.var(axis=axes) * (n / (n - 1) if unbiased else 1.0)
        mean = momentum * mean + (1 - momentum) * b.mean(axis=axes)
        var = momentum * var + (1 - momentum) * bvar
    return mean, var


# --------------------------------------------------------------------------------------------
# variables and collections
# --------------------------------------------------------------------------------------------

def test_batchnorm_variables_names_shapes_and_initial_values(graph, make_session):
    x = tfv1.placeholder(tf.float32, [None, 4, 4, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    assert {v.name: v.shape.as_list() for v in tfv1.global_variables()} == {
        "bn/beta:0": [3], "bn/gamma:0": [3], "bn/mean/EMA:0": [3], "bn/variance/EMA:0": [3]}
    values = make_session().run({k: getattr(y.variables, k) for k in ("beta", "gamma", "mean", "variance")})
    np.testing.assert_array_equal(values["beta"], np.zeros(3))
    np.testing.assert_array_equal(values["gamma"], np.ones(3))
    np.testing.assert_array_equal(values["mean"], np.zeros(3))
    np.testing.assert_array_equal(values["variance"], np.ones(3))


def test_batchnorm_moving_statistics_are_model_variables_and_not_trainable(graph):
    with TowerContext("", is_training=True):
        BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 3]))
    model_vars = {v.name for v in tfv1.get_collection(tfv1.GraphKeys.MODEL_VARIABLES)}
    assert model_vars == {"bn/mean/EMA:0", "bn/variance/EMA:0"}
    assert {v.name for v in tfv1.trainable_variables()} == {"bn/beta:0", "bn/gamma:0"}


def test_batchnorm_variable_holder_exposes_old_and_new_names(graph):
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 3]))
    assert y.variables.mean is y.variables.moving_mean
    assert y.variables.variance is y.variables.moving_variance
    assert y.variables.mean.name == "bn/mean/EMA:0" and y.variables.gamma.name == "bn/gamma:0"


def test_batchnorm_center_and_scale_false_create_only_moving_statistics(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, center=False, scale=False)
        BatchNorm("old", x, use_bias=False, use_scale=False)
    assert {v.op.name for v in tfv1.global_variables()} == {
        "bn/mean/EMA", "bn/variance/EMA", "old/mean/EMA", "old/variance/EMA"}
    xv = _data(rng, (6, 3))
    out = make_session().run(y, {x: xv})
    np.testing.assert_allclose(out, bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-5), rtol=1e-4, atol=1e-4)


def test_batchnorm_output_is_named_output(graph):
    with TowerContext("", is_training=False):
        y = BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 2, 2, 3]))
    assert y.name == "bn/output:0"


def test_batchnorm_unknown_batch_and_spatial_dims(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, None, None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    assert y.shape.as_list() == [None, None, None, 3]
    xv = _data(rng, (2, 3, 5, 3))
    axes = (0, 1, 2)
    ref = bn_ref(xv, xv.mean(axes), xv.var(axes), 1, 0, FUSED_MIN_EPS)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_batchnorm_float16_input_keeps_float32_parameters(graph, make_session, rng):
    x = tfv1.placeholder(tf.float16, [None, 2, 2, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    assert y.dtype == tf.float16
    assert y.variables.gamma.dtype.base_dtype == tf.float32
    xv = _data(rng, (4, 2, 2, 3))
    ref = bn_ref(xv, xv.mean((0, 1, 2)), xv.var((0, 1, 2)), 1, 0, FUSED_MIN_EPS)
    np.testing.assert_allclose(make_session().run(y, {x: xv.astype(np.float16)}), ref, rtol=1e-2, atol=1e-2)


def test_batchnorm_explicit_argument_beats_argscope(graph):
    with TowerContext("", is_training=True), argscope(BatchNorm, center=False, momentum=0.5):
        BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 3]), center=True)
    assert "bn/beta:0" in {v.name for v in tfv1.global_variables()}


# --------------------------------------------------------------------------------------------
# training-mode numerics
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_batchnorm_training_4d_uses_batch_statistics(graph, make_session, rng, data_format):
    ch_axis = 3 if data_format == "NHWC" else 1
    shape = (2, 3, 3, 4) if data_format == "NHWC" else (2, 4, 3, 3)
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    x = tfv1.placeholder(tf.float32, [None, *shape[1:]])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, data_format=data_format, gamma_initializer=tfv1.constant_initializer(gamma),
                      beta_initializer=tfv1.constant_initializer(beta))
    xv = _data(rng, shape, ch_axis)
    axes = _reduce_axes(4, ch_axis)
    ref = bn_ref(xv, xv.mean(axes), xv.var(axes), gamma, beta, FUSED_MIN_EPS, axis=ch_axis)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_batchnorm_training_2d_uses_batch_statistics(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 5])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    xv = _data(rng, (7, 5))
    ref = bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-5)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-4, atol=1e-4)


def test_batchnorm_4d_epsilon_is_clamped_to_fused_minimum(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3, 3, 2])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, epsilon=1e-9)
    xv = 3e-3 * rng.standard_normal((2, 3, 3, 2))     # variance ~1e-5: epsilon matters
    axes = (0, 1, 2)
    out = make_session().run(y, {x: xv})
    np.testing.assert_allclose(out, bn_ref(xv, xv.mean(axes), xv.var(axes), 1, 0, FUSED_MIN_EPS), rtol=1e-3,
                               atol=1e-4)
    assert not np.allclose(out, bn_ref(xv, xv.mean(axes), xv.var(axes), 1, 0, 1e-9), rtol=1e-2)


def test_batchnorm_4d_inference_epsilon_is_clamped_to_fused_minimum(graph, make_session, assign_values, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 2])
    with TowerContext("", is_training=False):
        y = BatchNorm("bn", x, epsilon=1e-9)
    sess = make_session()
    var = np.array([1e-5, 2e-5])
    assign_values(sess, {"bn/variance/EMA": var})
    xv = 3e-3 * rng.standard_normal((2, 2, 2, 2))
    np.testing.assert_allclose(sess.run(y, {x: xv}), bn_ref(xv, 0, var, 1, 0, FUSED_MIN_EPS), rtol=1e-4, atol=1e-5)


def test_batchnorm_2d_epsilon_is_used_as_given(graph, make_session, rng):
    x = tfv1.placeholder(tf.float64, [None, 2])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, epsilon=1e-9)
    xv = 3e-3 * rng.standard_normal((6, 2))
    ref = bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-9)
    np.testing.assert_allclose(make_session().run(y, {x: xv}), ref, rtol=1e-8)


@pytest.mark.parametrize("is_training", [True, False])
def test_batchnorm_float64_4d_follows_the_fused_numerics(graph, make_session, assign_values, rng, is_training):
    x = tfv1.placeholder(tf.float64, [None, 3, 3, 2])
    with TowerContext("", is_training=is_training):
        y = BatchNorm("bn", x, epsilon=1e-9)
    assert y.dtype == tf.float64 and y.variables.gamma.dtype.base_dtype == tf.float64
    sess = make_session()
    xv = 3e-3 * rng.standard_normal((2, 3, 3, 2))
    if is_training:
        mean, var = xv.mean((0, 1, 2)), xv.var((0, 1, 2))
        sess.run(tfv1.get_collection(UPDATE_OPS), {x: xv})
        n = 18
        np.testing.assert_allclose(sess.run(y.variables.variance), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-10)
    else:
        mean, var = np.array([0.01, -0.02]), np.array([2e-5, 5e-6])
        assign_values(sess, {"bn/mean/EMA": mean, "bn/variance/EMA": var})
    np.testing.assert_allclose(sess.run(y, {x: xv}), bn_ref(xv, mean, var, 1, 0, FUSED_MIN_EPS), rtol=1e-8)


# --------------------------------------------------------------------------------------------
# moving averages
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_batchnorm_4d_ema_after_k_steps_is_momentum_blend_with_unbiased_variance(graph, make_session, rng,
                                                                                 data_format):
    ch_axis = 3 if data_format == "NHWC" else 1
    shape = (2, 3, 2, 3) if data_format == "NHWC" else (2, 3, 3, 2)
    x = tfv1.placeholder(tf.float32, [None, *shape[1:]])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, data_format=data_format)
    update_ops = tfv1.get_collection(UPDATE_OPS)
    assert len(update_ops) == 2
    sess = make_session()
    batches = [_data(rng, shape, ch_axis) for _ in range(4)]
    for b in batches:
        sess.run(update_ops, {x: b})
    mean, var = _ema_blend(batches, ch_axis, unbiased=True)
    np.testing.assert_allclose(sess.run(y.variables.mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.run(y.variables.variance), var, rtol=1e-5, atol=1e-6)


def test_batchnorm_2d_ema_after_k_steps_is_momentum_blend_with_biased_variance(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    sess = make_session()
    batches = [_data(rng, (5, 3)) for _ in range(3)]
    for b in batches:
        sess.run(tfv1.get_collection(UPDATE_OPS), {x: b})
    mean, var = _ema_blend(batches, 1, unbiased=False)
    np.testing.assert_allclose(sess.run(y.variables.mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.run(y.variables.variance), var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"momentum": 0.5}, {"decay": 0.5}])
def test_batchnorm_momentum_and_old_name_decay(graph, make_session, rng, kwargs):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, **kwargs)
    sess = make_session()
    batches = [_data(rng, (4, 3)) for _ in range(2)]
    for b in batches:
        sess.run(tfv1.get_collection(UPDATE_OPS), {x: b})
    mean, _ = _ema_blend(batches, 1, momentum=0.5, unbiased=False)
    np.testing.assert_allclose(sess.run(y.variables.mean), mean, rtol=1e-5, atol=1e-6)


def test_batchnorm_ema_is_not_updated_unless_update_ops_run(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    sess = make_session()
    sess.run(y, {x: _data(rng, (4, 3))})
    np.testing.assert_array_equal(sess.run(y.variables.mean), np.zeros(3))


def test_batchnorm_update_ops_work_as_control_dependencies_of_a_train_op(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x)
    loss = tf.reduce_sum(tf.square(y - 1.0))
    with tf.control_dependencies(tfv1.get_collection(UPDATE_OPS)):
        train_op = tfv1.train.GradientDescentOptimizer(0.0).minimize(loss)
    sess = make_session()
    batches = [_data(rng, (4, 3)) for _ in range(2)]
    for b in batches:
        sess.run(train_op, {x: b})
    np.testing.assert_allclose(sess.run(y.variables.mean), _ema_blend(batches, 1, unbiased=False)[0], rtol=1e-5)


def test_batchnorm_ema_update_internal_updates_on_every_fetch_and_not_via_update_ops(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, ema_update="internal")
    assert tfv1.get_collection(UPDATE_OPS) == []
    sess = make_session()
    batches = [_data(rng, (3, 2, 2, 3)) for _ in range(3)]
    for b in batches:
        sess.run(y, {x: b})
    mean, var = _ema_blend(batches, 3, unbiased=True)
    np.testing.assert_allclose(sess.run(y.variables.mean), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.run(y.variables.variance), var, rtol=1e-5, atol=1e-6)


def test_batchnorm_ema_update_skip_never_updates(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, ema_update="skip")
    assert tfv1.get_collection(UPDATE_OPS) == []
    sess = make_session()
    xv = _data(rng, (4, 3))
    out = sess.run(y, {x: xv})
    np.testing.assert_allclose(out, bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-5), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(sess.run(y.variables.mean), np.zeros(3))
    np.testing.assert_array_equal(sess.run(y.variables.variance), np.ones(3))


def test_batchnorm_ema_update_collection_is_the_default(graph):
    with TowerContext("", is_training=True):
        BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 3]), ema_update="collection")
    assert len(tfv1.get_collection(UPDATE_OPS)) == 2


# --------------------------------------------------------------------------------------------
# towers
# --------------------------------------------------------------------------------------------

def test_batchnorm_predict_tower_uses_ema_statistics(graph, make_session, assign_values, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 3])
    with TowerContext("", is_training=False):
        y = BatchNorm("bn", x)
    assert tfv1.get_collection(UPDATE_OPS) == []
    sess = make_session()
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    assign_values(sess, {"bn/mean/EMA": mean, "bn/variance/EMA": var, "bn/gamma": gamma, "bn/beta": beta})
    xv = _data(rng, (2, 2, 2, 3))
    np.testing.assert_allclose(sess.run(y, {x: xv}), bn_ref(xv, mean, var, gamma, beta, FUSED_MIN_EPS), rtol=1e-5,
                               atol=1e-5)


def test_batchnorm_predict_tower_with_training_true_adds_nothing_to_update_ops(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with PredictTowerContext(""):
        y = BatchNorm("bn", x, training=True)
    assert tfv1.get_collection(UPDATE_OPS) == []
    xv = _data(rng, (4, 3))
    out = make_session().run(y, {x: xv})
    np.testing.assert_allclose(out, bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-5), rtol=1e-4, atol=1e-4)


def test_batchnorm_non_main_training_tower_does_not_update(graph):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 3])
    with TrainTowerContext("tower0", index=0, total=2):
        BatchNorm("bn", x)
    with tfv1.variable_scope(tfv1.get_variable_scope(), reuse=True):
        with TrainTowerContext("tower1", index=1, total=2) as ctx1:
            BatchNorm("bn", x)
    assert ctx1.get_collection_in_tower(UPDATE_OPS) == []
    ops = tfv1.get_collection(UPDATE_OPS)
    assert len(ops) == 2 and all(op.name.startswith("tower0/") for op in ops)
    assert len(tfv1.global_variables()) == 4


def test_batchnorm_training_false_in_training_tower_uses_ema_and_gives_gradients(graph, make_session,
                                                                                assign_values, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, training=False)
    assert tfv1.get_collection(UPDATE_OPS) == []
    r = rng.standard_normal((4, 2, 2, 3))
    g_gamma, g_beta, g_x = tf.gradients(tf.reduce_sum(y * r), [y.variables.gamma, y.variables.beta, x])
    sess = make_session()
    mean, var, gamma = rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 3)
    assign_values(sess, {"bn/mean/EMA": mean, "bn/variance/EMA": var, "bn/gamma": gamma})
    xv = _data(rng, (4, 2, 2, 3))
    out, gg, gb, gx = sess.run([y, g_gamma, g_beta, g_x], {x: xv})
    xhat = (xv - mean) / np.sqrt(var + FUSED_MIN_EPS)
    np.testing.assert_allclose(out, gamma * xhat, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gb, r.sum((0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gg, (r * xhat).sum((0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, r * gamma / np.sqrt(var + FUSED_MIN_EPS), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sess.run(y.variables.mean), mean, rtol=1e-6)


def test_batchnorm_old_name_use_local_stat_means_training(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=False):
        y = BatchNorm("bn", x, use_local_stat=True)
    xv = _data(rng, (5, 3))
    out = make_session().run(y, {x: xv})
    np.testing.assert_allclose(out, bn_ref(xv, xv.mean(0), xv.var(0), 1, 0, 1e-5), rtol=1e-4, atol=1e-4)


def test_batchnorm_without_tower_context_says_how_to_fix_it(graph):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with pytest.raises(RuntimeError, match=r"BatchNorm.*wrap the model in `with TowerContext\('', is_training=\.\.\.\)`"):
        BatchNorm("bn", x, training=True)


# --------------------------------------------------------------------------------------------
# virtual batches
# --------------------------------------------------------------------------------------------

def test_batchnorm_virtual_batch_normalizes_each_sub_batch_and_ema_follows_the_first(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 2, 2, 3])
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", x, virtual_batch_size=2, epsilon=1e-3)
    sess = make_session()
    xv = _data(rng, (6, 2, 2, 3))
    out, _ = sess.run([y, tfv1.get_collection(UPDATE_OPS)], {x: xv})
    subs = [xv[i:i + 2] for i in range(0, 6, 2)]
    ref = np.concatenate([bn_ref(s, s.mean((0, 1, 2)), s.var((0, 1, 2)), 1, 0, 1e-3) for s in subs])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    first = subs[0]
    np.testing.assert_allclose(sess.run(y.variables.mean), 0.1 * first.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sess.run(y.variables.variance), 0.9 + 0.1 * first.var((0, 1, 2)), rtol=1e-5)


def test_batchnorm_virtual_batch_is_ignored_in_inference(graph, make_session, rng):
    x = tfv1.placeholder(tf.float32, [None, 3])
    with TowerContext("", is_training=False):
        y = BatchNorm("bn", x, virtual_batch_size=2)
    xv = _data(rng, (4, 3))
    np.testing.assert_allclose(make_session().run(y, {x: xv}), xv / np.sqrt(1 + 1e-5), rtol=1e-5)


def test_batchnorm_virtual_batch_must_divide_the_batch(graph):
    with TowerContext("", is_training=True):
        with pytest.raises(ValueError, match="BatchNorm.*batch size 5.*virtual_batch_size 2"):
            BatchNorm("bn", tfv1.placeholder(tf.float32, [5, 3]), virtual_batch_size=2)


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------

def test_batchnorm_axis_1_on_4d_input_means_channels_first(graph):
    with TowerContext("", is_training=True):
        y = BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 5, 2, 2]), axis=1)
    assert y.variables.gamma.shape.as_list() == [5]


@pytest.mark.parametrize("kwargs,match", [
    ({"ema_update": "sometimes"}, r"BatchNorm.*ema_update.*'sometimes'"),
    ({"internal_update": True}, r"BatchNorm.*internal_update.*ema_update='internal'"),
    ({"axis": 2}, r"BatchNorm.*axis.*2"),
    ({"data_format": "NHCW"}, r"BatchNorm.*data_format 'NHCW'"),
    ({"sync_statistics": "nccl"}, r"BatchNorm.*sync_statistics='nccl'"),
])
def test_batchnorm_bad_arguments_name_the_argument_and_value(graph, kwargs, match):
    with TowerContext("", is_training=True):
        with pytest.raises((ValueError, TypeError), match=match):
            BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 2, 2, 3]), **kwargs)


def test_batchnorm_rejects_3d_input(graph):
    with TowerContext("", is_training=True):
        with pytest.raises(ValueError, match=r"BatchNorm.*2-D or 4-D"):
            BatchNorm("bn", tfv1.placeholder(tf.float32, [None, 4, 3]))

"""Every architecture builds for training and inference, with tensorpack's variable names and the
published parameter counts. Big networks are only built (nothing is run on full-size batches)."""
import numpy as np
import pytest
import tensorflow as tf

import model_zoo
from layers import SmartInit, TowerContext

from .conftest import load_vars_json

tfv1 = tf.compat.v1

SMALL = [  # one cheap configuration per architecture
    ("mnist-convnet", {}),
    ("cifar10-resnet", {"depth": 14}),
    ("imagenet-resnet", {"depth": 18}),
    ("vgg16", {}),
    ("shufflenet-v2", {"ratio": 0.5}),
]


def _variables(zoo, training=False):
    """{op name: shape} of the trainable variables and the list of all global variable names."""
    with tf.Graph().as_default():
        if training:
            image, label = zoo.model.create_placeholders()
            with TowerContext("", is_training=True):
                zoo.model.build_graph(image, label)
        else:
            model_zoo.build_inference_graph(zoo)
        trainable = {v.op.name: v.shape.as_list() for v in tfv1.trainable_variables()}
        return trainable, sorted(v.op.name for v in tfv1.global_variables())


# --- building ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options", SMALL, ids=[n for n, _ in SMALL])
def test_builds_a_training_graph_with_a_scalar_cost_and_gradients(name, options):
    zoo = model_zoo.get(name, **options)
    with tf.Graph().as_default() as g:
        image, label = zoo.model.create_placeholders()
        with TowerContext("", is_training=True):
            cost = zoo.model.build_graph(image, label)
        assert cost.shape.rank == 0 and cost.dtype == tf.float32
        opt = zoo.model.get_optimizer()
        assert isinstance(opt, tfv1.train.Optimizer)
        grads = opt.compute_gradients(cost)
        assert all(gr is not None for gr, _ in grads)
        assert g.get_tensor_by_name(zoo.output("prob").tensor) is not None
        assert g.get_tensor_by_name(zoo.output("logits").tensor).shape.as_list() == [None, zoo.num_classes]


@pytest.mark.parametrize("name, options", SMALL, ids=[n for n, _ in SMALL])
def test_builds_an_inference_graph_with_the_declared_inputs_and_outputs(name, options):
    zoo = model_zoo.get(name, **options)
    with tf.Graph().as_default():
        feeds, fetches = model_zoo.build_inference_graph(zoo)
        spec = zoo.input
        assert list(feeds) == ["input"]
        assert feeds["input"].shape.as_list() == [None, *spec.shape]
        assert feeds["input"].dtype.name == spec.dtype
        for out in fetches.values():
            assert out.shape.as_list() == [None, zoo.num_classes]
        assert tfv1.get_collection(tfv1.GraphKeys.UPDATE_OPS) == []


@pytest.mark.parametrize("name, options", SMALL[:3], ids=[n for n, _ in SMALL[:3]])
def test_training_and_inference_graphs_have_the_same_variables(name, options):
    zoo = model_zoo.get(name, **options)
    assert _variables(zoo, training=True) == _variables(zoo, training=False)


# --- parameter counts (trainable variables only) -------------------------------------------------

@pytest.mark.parametrize("name, options, count", [
    ("imagenet-resnet", {"depth": 18}, 11_689_512),
    ("imagenet-resnet", {"depth": 34}, 21_797_672),
    ("imagenet-resnet", {"depth": 50}, 25_557_032),
    ("imagenet-resnet", {"depth": 152}, 60_192_808),
    ("vgg16", {}, 138_357_544),
    ("shufflenet-v2", {"ratio": 0.5}, 1_366_792),
    # tensorpack's block0 keeps the shortcut's input width (torchvision's 1x has 2,278,604)
    ("shufflenet-v2", {"ratio": 1.0}, 2_279_760),
    ("mnist-convnet", {}, 3_252_106),                                   # the "~3.3M" tutorial net
    ("cifar10-resnet", {"depth": 14}, 172_506),
    ("cifar10-resnet", {"depth": 20}, 269_722),                         # He et al. 2016: 0.27M
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}{x}" for k, x in v.items()))
def test_parameter_count_matches_the_published_architecture(name, options, count):
    assert model_zoo.count_parameters(model_zoo.get(name, **options)) == count


def test_parameter_count_is_layout_independent():
    assert model_zoo.count_parameters(model_zoo.get("cifar10-resnet", depth=14, data_format="NCHW")) == 172_506


# --- variable names ------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, name, options", [
    ("resnet18_imagenet", "imagenet-resnet", {"depth": 18, "input_dtype": "float32"}),
    ("resnet18_imagenet", "imagenet-resnet", {"depth": 18, "data_format": "NCHW"}),
    ("resnet_cifar", "cifar10-resnet", {"depth": 14}),
    ("mnist_linearwrap", "mnist-convnet", {}),
])
def test_variable_names_and_shapes_equal_tensorpacks(fixture, name, options):
    expected = {v["op_name"]: v["shape"] for v in load_vars_json(fixture)["variables"]}
    with tf.Graph().as_default():
        model_zoo.build_inference_graph(model_zoo.get(name, **options))
        got = {v.op.name: v.shape.as_list() for v in tfv1.global_variables()}
    assert got == expected


@pytest.mark.parametrize("fixture, name, options", [
    ("resnet18_imagenet", "imagenet-resnet", {"depth": 18, "input_dtype": "float32"}),
    ("resnet_cifar", "cifar10-resnet", {"depth": 14}),
    ("mnist_linearwrap", "mnist-convnet", {}),
])
def test_initializers_equal_tensorpacks(fixture, name, options):
    """Same initializer op per variable (zero-init gammas included) and the same constants
    (fan-out truncated normal std, linear/W std 0.01, ...)."""
    from tensorflow.python.framework import tensor_util

    with tf.Graph().as_default() as g:
        model_zoo.build_inference_graph(model_zoo.get(name, **options))
        for v in load_vars_json(fixture)["variables"]:
            init = v["initializer"]
            g.get_operation_by_name(init["op"])                      # e.g. .../gamma/Initializer/zeros
            for key, value in (init.get("consts") or {}).items():
                op = g.get_operation_by_name(f"{v['op_name']}/Initializer/{key}")
                np.testing.assert_allclose(tensor_util.MakeNdarray(op.get_attr("value")), value, rtol=1e-6)


def test_resnet50_has_tensorpacks_zoo_layout():
    trainable, all_vars = _variables(model_zoo.get("imagenet-resnet", depth=50))
    assert trainable["conv0/W"] == [7, 7, 3, 64]
    assert trainable["group0/block0/conv1/W"] == [1, 1, 64, 64]
    assert trainable["group0/block0/conv3/W"] == [1, 1, 64, 256]
    assert trainable["group0/block0/convshortcut/W"] == [1, 1, 64, 256]
    assert trainable["group3/block2/conv3/bn/gamma"] == [2048]
    assert trainable["linear/W"] == [2048, 1000] and trainable["linear/b"] == [1000]
    assert "group0/block1/convshortcut/W" not in trainable
    assert "group3/block2/conv3/bn/variance/EMA" in all_vars
    assert not any(n.endswith("/b") for n in trainable if "linear" not in n)   # convs have no bias
    assert sum(1 for n in trainable if n.endswith("/W")) == 54                   # 53 convs + linear


def test_se_resnet_adds_fc1_fc2_per_bottleneck():
    trainable, _ = _variables(model_zoo.get("imagenet-resnet", depth=50, mode="se"))
    assert sum(int(np.prod(s)) for s in trainable.values()) == 28_088_024     # SE-ResNet-50 (Hu et al.)
    assert trainable["group0/block0/fc1/W"] == [256, 16]
    assert trainable["group0/block0/fc2/W"] == [16, 256]
    assert trainable["group3/block2/fc2/b"] == [2048]


def test_preact_resnet_has_preact_and_bnlast_scopes():
    trainable, _ = _variables(model_zoo.get("imagenet-resnet", depth=18, mode="preact"))
    assert "group0/block0/preact/bn/gamma" not in trainable      # the first block is not pre-activated
    assert trainable["group0/block1/preact/bn/gamma"] == [64]
    assert trainable["group3/bnlast/bn/beta"] == [512]


def test_vgg16_names_and_fc6_input_size():
    trainable, _ = _variables(model_zoo.get("vgg16"))
    assert trainable["conv1_1/W"] == [3, 3, 3, 64] and trainable["conv1_1/b"] == [64]
    assert trainable["conv5_3/W"] == [3, 3, 512, 512]
    assert trainable["fc6/W"] == [25088, 4096] and trainable["fc8/W"] == [4096, 1000]
    bn, _ = _variables(model_zoo.get("vgg16", norm="bn"))
    assert bn["conv3_2_bn/gamma"] == [256]


def test_shufflenet_v2_names_match_tensorpacks_zoo_files():
    trainable, all_vars = _variables(model_zoo.get("shufflenet-v2", ratio=1.0))
    assert trainable["conv1/W"] == [3, 3, 3, 24]
    assert trainable["stage2/block0/conv1/W"] == [1, 1, 24, 58]
    assert trainable["stage2/block0/dconv/W"] == [3, 3, 58, 1]
    assert trainable["stage2/block0/conv2/W"] == [1, 1, 58, 92]        # 116 - 24 shortcut channels
    assert trainable["stage2/block0/shortcut_dconv/W"] == [3, 3, 24, 1]
    assert trainable["stage2/block0/shortcut_conv/W"] == [1, 1, 24, 24]
    assert trainable["stage2/block1/conv1/W"] == [1, 1, 58, 58]
    assert trainable["stage4/block3/conv2/W"] == [1, 1, 232, 232]
    assert trainable["conv5/W"] == [1, 1, 464, 1024]
    assert trainable["linear/W"] == [1024, 1000]
    assert "stage3/block7/dconv_bn/mean/EMA" in all_vars
    assert "stage2/block0/shortcut_dconv_bn/gamma" in trainable


# --- running tiny batches --------------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [("mnist-convnet", {}), ("cifar10-resnet", {"depth": 14})])
def test_one_training_step_runs_and_updates_batchnorm_statistics(name, options, rng):
    zoo = model_zoo.get(name, **options)
    with tf.Graph().as_default() as g:
        tfv1.set_random_seed(0)
        image, label = zoo.model.create_placeholders()
        with TowerContext("", is_training=True):
            cost = zoo.model.build_graph(image, label)
        update_ops = tfv1.get_collection(tfv1.GraphKeys.UPDATE_OPS)
        train_op = tf.group(zoo.model.get_optimizer().minimize(cost), *update_ops)
        ema = [v for v in tfv1.global_variables() if v.op.name.endswith("mean/EMA")]
        with tfv1.Session(graph=g) as sess:
            sess.run(tfv1.global_variables_initializer())
            x = (rng.uniform(0, 1 if zoo.input.dtype == "float32" else 255, (2, *zoo.input.shape))
                 .astype(zoo.input.dtype))
            before = sess.run(ema)
            c, _ = sess.run([cost, train_op], {image: x, label: [1, 3]})
            after = sess.run(ema)
    assert np.isfinite(c)
    assert (len(ema) > 0) == (name != "mnist-convnet")
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def _shufflenet_logits(fmt, x, weights=None):
    """ShuffleNetV2-0.5x logits of ``x`` (a small float image: the network takes any size divisible
    by 32) built in ``fmt``; random weights (seeded) unless ``weights`` are given."""
    zoo = model_zoo.get("shufflenet-v2", ratio=0.5, data_format=fmt)
    with tf.Graph().as_default():
        tfv1.set_random_seed(0)
        image = tfv1.placeholder(tf.float32, [None, *x.shape[1:]])
        with TowerContext("", is_training=False):
            logits = zoo.model.get_logits(image if fmt == "NHWC" else tf.transpose(image, [0, 3, 1, 2]))
        with tfv1.Session() as sess:
            sess.run(tfv1.global_variables_initializer())
            if weights is not None:
                SmartInit(weights).init(sess)
            variables = tfv1.global_variables()
            return sess.run(logits, {image: x}), dict(zip([v.name for v in variables], sess.run(variables),
                                                          strict=True))


def test_shufflenet_nchw_and_nhwc_compute_the_same_function(rng):
    """Same weights, both layouts (NCHW runs through CPU-safe transposes): depthwise convolution,
    channel split/concat and channel shuffle must agree."""
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    nhwc, weights = _shufflenet_logits("NHWC", x)
    nchw, _ = _shufflenet_logits("NCHW", x, weights)
    np.testing.assert_allclose(nchw, nhwc, rtol=1e-4, atol=1e-5)

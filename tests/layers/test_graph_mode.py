"""Layers are symbolic: they build inside ``tf.Graph().as_default()`` with eager execution left on
globally, and refuse to run eagerly with a message that says what to do."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import layers
from layers import BatchNorm, Conv2D, FullyConnected, MaxPooling, TowerContext

tfv1 = tf.compat.v1
ROOT = Path(__file__).resolve().parents[2]


def test_importing_layers_leaves_eager_execution_on():
    assert layers.Conv2D is Conv2D
    assert tf.executing_eagerly()


def test_importing_layers_in_a_fresh_interpreter_changes_no_global_tensorflow_mode():
    code = ("import tensorflow as tf; import layers; "
            "assert tf.executing_eagerly(); "
            "assert tf.compat.v1.resource_variables_enabled(); "
            "assert tf.__internal__.tf2.enabled(); print('ok')")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_layers_build_and_run_inside_a_graph_without_disabling_eager(rng):
    g = tf.Graph()
    with g.as_default():
        assert not tf.executing_eagerly()
        x = tfv1.placeholder(tf.float32, [None, 6, 6, 1])
        with TowerContext("", is_training=False):
            net = Conv2D("conv", x, 2, 3, activation=tf.nn.relu)
            net = BatchNorm("bn", MaxPooling("pool", net, 2))
            out = FullyConnected("fc", net, 3)
        with tfv1.Session(graph=g) as sess:
            sess.run(tfv1.global_variables_initializer())
            assert sess.run(out, {x: rng.random((2, 6, 6, 1))}).shape == (2, 3)
    assert tf.executing_eagerly()


@pytest.mark.parametrize("call", [
    lambda x: Conv2D("conv", x, 2, 3),
    lambda x: FullyConnected("fc", x, 2),
    lambda x: MaxPooling("pool", x, 2),
])
def test_a_layer_called_eagerly_raises_and_says_it_needs_a_graph(call):
    x = tf.constant(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(RuntimeError, match=r"symbolic \(graph-mode\) layer.*called eagerly.*tf\.Graph\(\)\.as_default\(\)"):
        call(x)


def test_tower_context_entered_eagerly_raises():
    with pytest.raises(RuntimeError, match=r"TowerContext.*tf\.Graph\(\)\.as_default\(\)"):
        with TowerContext("", is_training=True):
            pass

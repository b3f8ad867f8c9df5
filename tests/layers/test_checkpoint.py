"""Saving model parameters, save/load round trips, and the ``python -m layers.checkpoint`` CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    OfflinePredictor,
    PredictConfig,
    SmartInit,
    TowerContext,
    dump_model_params,
    load_checkpoint_vars,
)
from layers.checkpoint import main, meta_graph_model_variables
from tests.layers._nets import TinyNet, fixture, session_config

tfv1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_MODEL_VARS = ["bn/beta", "bn/gamma", "bn/mean/EMA", "bn/variance/EMA", "conv/W", "conv/b", "fc/W", "fc/b"]


def _randomize(sess, rng):
    """Give every variable a non-trivial value (positive for BatchNorm variances)."""
    variables = tfv1.global_variables()
    feed = {}
    for v in variables:
        value = rng.uniform(0.5, 1.5, v.shape.as_list()).astype(v.dtype.base_dtype.as_numpy_dtype)
        feed[v.initializer.inputs[1]] = value
    sess.run([v.initializer for v in variables], feed)


def _train_graph(rng, make_session):
    """TinyNet built for training with a Momentum optimizer (so there are slots and a global_step)."""
    model = TinyNet()
    (x,) = model.create_placeholders()
    with TowerContext("", is_training=True):
        logits = model.build_graph(x)
    step = tfv1.train.get_or_create_global_step()
    tfv1.train.MomentumOptimizer(0.1, 0.9).minimize(tf.reduce_sum(logits), global_step=step)
    sess = make_session()
    _randomize(sess, rng)
    return sess


def _run(*args, cwd=ROOT):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "layers.checkpoint", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------
# dump_model_params
# --------------------------------------------------------------------------------------------

def test_dump_model_params_keeps_weights_and_bn_statistics_but_no_optimizer_state(graph, make_session, rng,
                                                                                    tmp_path):
    sess = _train_graph(rng, make_session)
    assert any(v.op.name.endswith("/Momentum") for v in tfv1.global_variables())
    dumped = dump_model_params(sess, str(tmp_path / "m.npz"))
    assert sorted(dumped) == [n + ":0" for n in TINY_MODEL_VARS]
    with np.load(tmp_path / "m.npz") as z:
        assert sorted(z.files) == sorted(dumped)
        ema = next(v for v in tfv1.global_variables() if v.op.name == "bn/mean/EMA")
        np.testing.assert_array_equal(z["bn/mean/EMA:0"], sess.run(ema))


def test_dump_model_params_of_an_inference_only_graph_includes_bn_statistics(graph, make_session, tmp_path):
    model = TinyNet()
    with TowerContext("", is_training=False):
        model.build_graph(*model.create_placeholders())
    dumped = dump_model_params(make_session(), str(tmp_path / "model-0"))
    assert sorted(dumped) == [n + ":0" for n in TINY_MODEL_VARS]
    assert sorted(tf.train.load_checkpoint(str(tmp_path / "model-0")).get_variable_to_shape_map()) == TINY_MODEL_VARS


# --------------------------------------------------------------------------------------------
# Round trips: build -> values -> save -> new graph -> SmartInit -> identical outputs
# --------------------------------------------------------------------------------------------

def _source_outputs(rng, save):
    """Build TinyNet for inference, randomize, save with ``save(sess)``; return (input, outputs)."""
    x = rng.standard_normal((5, 4, 4, 2)).astype(np.float32)
    with tf.Graph().as_default() as g:
        model = TinyNet()
        (ph,) = model.create_placeholders()
        with TowerContext("", is_training=False):
            out = model.build_graph(ph)
        with tfv1.Session(graph=g, config=session_config()) as sess:
            sess.run(tfv1.global_variables_initializer())
            _randomize(sess, rng)
            save(sess)
            return x, sess.run(out, {ph: x})


def _predict(path, x):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=SmartInit(path),
                           session_config=session_config())
    with OfflinePredictor(config) as pred:
        assert sorted(pred.restore_report.restored) == TINY_MODEL_VARS
        return pred(x)[0]


def test_round_trip_through_dumped_npz_gives_identical_outputs(rng, tmp_path):
    path = str(tmp_path / "tiny.npz")
    x, expected = _source_outputs(rng, lambda sess: dump_model_params(sess, path))
    np.testing.assert_array_equal(_predict(path, x), expected)


def test_round_trip_through_a_tf_saver_checkpoint_gives_identical_outputs(rng, tmp_path):
    prefix = str(tmp_path / "train_log" / "model-100")

    def save(sess):
        with sess.graph.as_default():
            tfv1.train.Saver().save(sess, prefix)

    x, expected = _source_outputs(rng, save)
    np.testing.assert_array_equal(_predict(str(tmp_path / "train_log"), x), expected)
    np.testing.assert_array_equal(_predict(prefix + ".index", x), expected)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def test_cli_ls_prints_names_shapes_dtypes_and_parameter_count():
    result = _run("ls", fixture("mnist_linearwrap.npz"))
    assert result.returncode == 0, result.stderr
    expected = load_checkpoint_vars(fixture("mnist_linearwrap.npz"))
    lines = result.stdout.splitlines()
    for name, value in expected.items():
        assert any(line.split()[0] == name and str(list(value.shape)) in line and "float32" in line
                   for line in lines), name
    total = sum(v.size for v in expected.values())
    assert f"{len(expected)} variables, {total:,} parameters" in lines[-1]


def test_cli_ls_reads_a_checkpoint_directory(capsys):
    assert main(["ls", fixture("resnet_cifar")]) == 0
    out = capsys.readouterr().out
    assert "res3.1/conv2/W" in out and "[3, 3, 64, 64]" in out and out.splitlines()[-1].startswith("67 variables")


def test_cli_converts_npz_to_checkpoint_and_back(tmp_path):
    ckpt = str(tmp_path / "ck" / "model-0")
    back = str(tmp_path / "back.npz")
    first = _run("convert", fixture("resnet_cifar.npz"), ckpt)
    assert first.returncode == 0, first.stderr
    assert "wrote 67 variables" in first.stdout
    second = _run("convert", str(tmp_path / "ck"), back)
    assert second.returncode == 0, second.stderr
    original = load_checkpoint_vars(fixture("resnet_cifar.npz"))
    for converted in (load_checkpoint_vars(ckpt), load_checkpoint_vars(back)):
        assert sorted(converted) == sorted(original)
        for k in original:
            np.testing.assert_array_equal(converted[k], original[k])
    with np.load(back) as z:
        assert all(k.endswith(":0") for k in z.files)


def test_cli_convert_with_meta_keeps_only_model_variables(graph, make_session, rng, tmp_path):
    sess = _train_graph(rng, make_session)
    tfv1.train.Saver().save(sess, str(tmp_path / "model-7"))
    tfv1.train.export_meta_graph(str(tmp_path / "graph.meta"), graph=graph)
    assert sorted(meta_graph_model_variables(str(tmp_path / "graph.meta"))) == TINY_MODEL_VARS
    assert main(["convert", str(tmp_path / "model-7"), str(tmp_path / "m.npz"), "--meta",
                 str(tmp_path / "graph.meta")]) == 0
    assert sorted(load_checkpoint_vars(str(tmp_path / "m.npz"))) == TINY_MODEL_VARS
    assert len(load_checkpoint_vars(str(tmp_path / "model-7"))) > len(TINY_MODEL_VARS)   # had slots + step


def test_cli_convert_with_meta_fails_when_the_input_lacks_a_variable(graph, make_session, rng, tmp_path, capsys):
    _train_graph(rng, make_session)
    tfv1.train.export_meta_graph(str(tmp_path / "graph.meta"), graph=graph)
    assert main(["convert", fixture("mnist_linearwrap.npz"), str(tmp_path / "m.npz"), "--meta",
                 str(tmp_path / "graph.meta")]) == 2
    assert "lacks 8 model variable(s)" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_cli_reports_a_missing_file_as_an_error(tmp_path, capsys):
    assert main(["ls", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["ls", "--help"], ["convert", "--help"]])
def test_cli_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m layers.checkpoint" in out
    if argv[0] == "convert":
        assert "--meta GRAPH.meta" in out and "optimizer slots" in out

"""Shared fixtures for the whole test suite (layers, predictors, model zoo, service).

TensorFlow is imported here, after ``TF_CPP_MIN_LOG_LEVEL`` has a default, so its C++ logging stays quiet.
Graphs are built with ``tf.Graph().as_default()``; eager execution is never disabled globally.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Apps and servers under test open no gRPC port unless a test asks for one (several test servers, and
# other test runs on the machine, would all want 8001).
os.environ.setdefault("TPSERVE_GRPC_PORT", "0")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def session_config():
    """A small ConfigProto: the CI machine has 2 cores shared with other jobs."""
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)


@pytest.fixture
def fixtures_dir() -> Path:
    """``tests/fixtures``: reference files made by the real tensorpack (see its README.md)."""
    return FIXTURES_DIR


@pytest.fixture
def graph():
    """A fresh ``tf.Graph``, installed as the default graph for the duration of the test."""
    g = tf.Graph()
    with g.as_default():
        yield g


@pytest.fixture
def rng():
    """A seeded NumPy generator, so every test sees the same data on every run."""
    return np.random.default_rng(1234)


@pytest.fixture
def make_session(graph):
    """Factory: ``sess = make_session()`` opens a session on ``graph`` (or ``graph=g``) and, unless
    ``initialize=False``, runs the global variable initializers. Sessions are closed after the test."""
    sessions = []

    def make(initialize=True, graph=graph):
        sess = tf.compat.v1.Session(graph=graph, config=session_config())
        sessions.append(sess)
        if initialize:
            with graph.as_default():
                init = tf.compat.v1.global_variables_initializer()
            sess.run(init)
        return sess

    yield make
    for sess in sessions:
        sess.close()


@pytest.fixture
def assign_values():
    """``assign_values(sess, {variable_or_name: ndarray})``: load values into variables of ``sess.graph``
    (names may be op names ``conv/W`` or tensor names ``conv/W:0``)."""

    def assign(sess, values):
        g = sess.graph
        by_name = {v.op.name: v for v in g.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
        ops, feed = [], {}
        with g.as_default():
            for key, value in values.items():
                var = by_name[key.split(":")[0]] if isinstance(key, str) else key
                value = np.asarray(value)
                ph = tf.compat.v1.placeholder(var.dtype.base_dtype, value.shape)
                ops.append(var.assign(ph).op)
                feed[ph] = value
        sess.run(ops, feed)

    return assign

"""Small helpers around a :class:`~model_zoo.spec.ZooModel`'s graph."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from layers import PredictTowerContext

from .spec import ZooModel

__all__ = ["build_inference_graph", "count_parameters"]

tfv1 = tf.compat.v1


def build_inference_graph(zoo: ZooModel):
    """Build ``zoo``'s inference graph in the current default graph, as a predictor does.

    Placeholders for every input of ``zoo.model`` are created at the root name scope and the model
    is built under ``PredictTowerContext('')``.

    Returns:
        ``(feeds, fetches)``: ``{input name: placeholder}`` for the serving inputs and
        ``{output name: tensor}`` for ``zoo.outputs``.
    """
    if tf.executing_eagerly():
        raise RuntimeError("build_inference_graph: call it inside `with tf.Graph().as_default():`")
    placeholders = zoo.model.create_placeholders()
    with PredictTowerContext(""):
        zoo.model.build_graph(*placeholders)
    graph = tfv1.get_default_graph()
    feeds = {p.op.name: p for p in placeholders if p.op.name in zoo.input_names}
    fetches = {o.name: graph.get_tensor_by_name(o.tensor) for o in zoo.outputs}
    return feeds, fetches


def count_parameters(zoo: ZooModel) -> int:
    """Number of trainable parameters of ``zoo`` (builds the inference graph in a fresh graph;
    nothing is run)."""
    with tf.Graph().as_default():
        build_inference_graph(zoo)
        return int(sum(np.prod(v.shape.as_list()) for v in tfv1.trainable_variables()))

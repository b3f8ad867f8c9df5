"""Export a predictor's graph and restored weights as a TensorFlow SavedModel."""
from __future__ import annotations

import logging
import os

from ._compat import tfv1
from .predict import PredictConfig, _build_single

__all__ = ["export_saved_model"]

logger = logging.getLogger(__name__)


def _key(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def export_saved_model(config: PredictConfig, export_dir, *, tags=("serve",),
                       signature_name="serving_default") -> dict:
    """Write the graph ``config`` describes, with the values ``config.session_init`` restores, as a
    TF1-style SavedModel (``tf.compat.v1.saved_model.Builder``).

    The signature ``signature_name`` (default ``'serving_default'``) has one input per
    ``config.input_names`` and one output per ``config.output_names``, keyed by those names
    (``:0`` dropped). Load it with ``tf.saved_model.load(export_dir)`` and call
    ``loaded.signatures['serving_default'](input=x)``, which returns a dict of tensors.
    ``config.strict`` applies as for a predictor.

    Args:
        config: the :class:`~layers.PredictConfig`.
        export_dir: a directory that does not exist yet (or is empty).
        tags: meta graph tags; default ``('serve',)`` (``tag_constants.SERVING``).
        signature_name: signature key; default ``'serving_default'``.

    Returns:
        ``{'inputs': {key: tensor name}, 'outputs': {key: tensor name}}`` of the signature.
    """
    if not isinstance(config, PredictConfig):
        raise TypeError(f"export_saved_model: expected a PredictConfig, got {type(config).__name__}")
    export_dir = os.path.expanduser(os.fspath(export_dir))
    if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or os.listdir(export_dir)):
        raise FileExistsError(f"export_saved_model: {export_dir!r} already exists and is not an empty directory")
    in_keys = [_key(n) for n in config.input_names]
    out_keys = [_key(n) for n in config.output_names]
    for what, keys in (("input", in_keys), ("output", out_keys)):
        if len(set(keys)) != len(keys):
            raise ValueError(f"export_saved_model: duplicate {what} names {keys}")
    graph, session, inputs, outputs, _, _ = _build_single(config)
    try:
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)   # the builder insists on creating it
        with graph.as_default():
            sig = tfv1.saved_model.signature_def_utils.predict_signature_def(
                inputs=dict(zip(in_keys, inputs, strict=True)), outputs=dict(zip(out_keys, outputs, strict=True)))
            builder = tfv1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(session, list(tags), signature_def_map={signature_name: sig},
                                                 strip_default_attrs=True)
            builder.save()
    finally:
        session.close()
    logger.info("Exported SavedModel to %s (signature %r)", export_dir, signature_name)
    return {"inputs": {k: t.name for k, t in zip(in_keys, inputs, strict=True)},
            "outputs": {k: t.name for k, t in zip(out_keys, outputs, strict=True)}}

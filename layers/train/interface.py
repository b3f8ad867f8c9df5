"""``launch_train_with_config(config, trainer)``: train a ``TrainConfig`` the tensorpack way."""
from __future__ import annotations

from .._compat import tf, tfv1
from ..input_source import FeedInput, InputSource, QueueInput
from ..utils import logger
from .config import TrainConfig
from .tower import SingleCostTrainer
from .trainers import SimpleTrainer

__all__ = ["launch_train_with_config", "apply_default_prefetch"]


def apply_default_prefetch(input_source_or_dataflow, trainer):
    """A DataFlow becomes ``FeedInput`` for a :class:`SimpleTrainer` and ``QueueInput`` otherwise;
    an InputSource is used as is."""
    if isinstance(input_source_or_dataflow, InputSource):
        return input_source_or_dataflow
    if type(trainer) is SimpleTrainer:
        return FeedInput(input_source_or_dataflow)
    logger.info("Automatically applying QueueInput on the DataFlow.")
    return QueueInput(input_source_or_dataflow)


def launch_train_with_config(config, trainer):
    """Build ``config.model`` with ``trainer`` on ``config.data``/``config.dataflow`` and train.

    Unlike tensorpack, eager execution is not switched off globally: when called with eager on
    (the TF2 default), the training graph is a new ``tf.Graph``; inside
    ``with tf.Graph().as_default():`` that graph is used.

    Example: ``launch_train_with_config(config, SimpleTrainer())``.
    """
    if not isinstance(trainer, SingleCostTrainer):
        raise TypeError(f"launch_train_with_config: trainer must be a SingleCostTrainer (e.g. SimpleTrainer()), got "
                        f"{type(trainer).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"launch_train_with_config: config must be a TrainConfig, got {type(config).__name__}")
    if config.model is None:
        raise ValueError("launch_train_with_config: TrainConfig(model=...) is required")
    if config.dataflow is None and config.data is None:
        raise ValueError("launch_train_with_config: TrainConfig needs dataflow= or data=")
    graph = tf.Graph() if tf.executing_eagerly() else tfv1.get_default_graph()
    with graph.as_default():
        model = config.model
        input = apply_default_prefetch(config.data or config.dataflow, trainer)
        trainer.setup_graph(model.get_input_signature(), input, model.build_graph, model.get_optimizer)
        _check_unused_regularization()
        trainer.train_with_defaults(
            callbacks=config.callbacks, monitors=config.monitors, session_creator=config.session_creator,
            session_init=config.session_init, steps_per_epoch=config.steps_per_epoch,
            starting_epoch=config.starting_epoch, max_epoch=config.max_epoch, extra_callbacks=config.extra_callbacks)


def _check_unused_regularization():
    unused = [c.name for c in tfv1.get_collection(tfv1.GraphKeys.REGULARIZATION_LOSSES) if not c.consumers()]
    if unused:
        logger.warning("These tensors in REGULARIZATION_LOSSES are not used by the cost (forgot to add them?): %s",
                       ", ".join(unused))

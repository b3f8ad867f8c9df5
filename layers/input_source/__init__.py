"""tensorpack's input sources: ``from layers.input_source import QueueInput`` (see :mod:`.input_source`)."""
from .input_source import (
    DummyConstantInput,
    FeedfreeInput,
    FeedInput,
    InputSource,
    PlaceholderInput,
    QueueInput,
    TensorInput,
    build_or_reuse_placeholder,
    is_dataflow,
)

__all__ = ["InputSource", "PlaceholderInput", "FeedInput", "FeedfreeInput", "QueueInput", "TensorInput",
           "DummyConstantInput", "is_dataflow", "build_or_reuse_placeholder"]

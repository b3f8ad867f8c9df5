"""``ZooModel``: a ``layers.ModelDesc`` plus what a server needs to feed it and read it.

A ZooModel is what :func:`model_zoo.get` returns. It bundles

* ``model``: the :class:`layers.ModelDesc` (inputs ``input`` and ``label``; ``build_graph``
  returns the training cost in a training tower and only builds the inference outputs otherwise);
* ``inputs``: the *serving* inputs (:class:`InputSpec`: name, dtype, shape without the batch
  dimension, value range, channel order) — the label is a training-only input and is not listed;
* ``outputs``: named outputs (:class:`OutputSpec`, e.g. ``prob`` -> ``prob:0``,
  ``logits`` -> ``linear/output:0``) with the tensor names tensorpack's examples used;
* ``labels``: class names (``'0'``..``'9'``, the CIFAR-10 names, or ``class_<i>`` where no label
  file is available offline);
* ``preprocess_image``: HxWx3 uint8 RGB -> one model input row, done the way tensorpack's
  examples fed the model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["InputSpec", "OutputSpec", "ZooModel"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One serving input of a model.

    Attributes:
        name: placeholder name (``'input'``), fed as ``'input:0'``.
        dtype: numpy dtype name, ``'float32'`` or ``'uint8'``.
        shape: shape of one example, without the batch dimension, e.g. ``(224, 224, 3)``.
        value_range: ``(low, high)`` of the values the model was trained on.
        channel_order: ``'BGR'``, ``'RGB'`` or ``'gray'`` (single channel, no channel axis).
        description: one line on what to feed.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    value_range: tuple[float, float]
    channel_order: str
    description: str = ""

    @property
    def tensor_name(self) -> str:
        return self.name + ":0"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["value_range"] = list(self.value_range)
        return d


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One named output: ``name`` is what clients ask for, ``tensor`` the graph tensor."""

    name: str
    tensor: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class ZooModel:
    """A registered architecture instantiated with concrete options (see the module docstring).

    Attributes:
        architecture: the registry name (``'imagenet-resnet'``).
        config: the architecture's config dataclass instance (its options).
        model: the ``layers.ModelDesc`` to build graphs with (None for a SavedModel, see
            :mod:`model_zoo.user`).
        inputs: serving inputs (the training-only ``label`` input is not listed); a user model's
            ``value_range`` is ``()`` when its config gives none.
        outputs: named outputs; the first is the default one (``prob``).
        labels: class names, index -> name.
        preprocessing: one-paragraph description of what :meth:`preprocess_image` does.
        _preprocess: the image transform; None when the model takes no images.
    """

    architecture: str
    config: Any
    model: Any
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    labels: tuple[str, ...]
    preprocessing: str
    _preprocess: Callable[[np.ndarray], np.ndarray] | None = dataclasses.field(repr=False)

    # --- convenience ----------------------------------------------------------------------
    @property
    def options(self) -> dict[str, Any]:
        return self.config.options()

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input(self) -> InputSpec:
        """The single serving input (every zoo model has exactly one)."""
        return self.inputs[0]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def output(self, name: str) -> OutputSpec:
        """The output called ``name``; ``ValueError`` listing the valid names otherwise."""
        for o in self.outputs:
            if o.name == name:
                return o
        raise ValueError(f"{self.architecture}: unknown output {name!r}; valid outputs: {self.output_names}")

    @property
    def takes_images(self) -> bool:
        """False for a model with no image transform (a user model without ``"image"``)."""
        return self._preprocess is not None

    def preprocess_image(self, image: np.ndarray) -> np.ndarray:
        """One HxWx3 uint8 RGB image (any size) -> one input row of shape ``self.input.shape``.

        Also accepts an HxW grayscale uint8 array. What is done is described in
        :attr:`preprocessing` (resize, crop, channel order, scaling).

        Raises:
            ValueError: not a uint8 HxWx3 / HxW array.
        """
        if self._preprocess is None:
            raise ValueError(f"{self.architecture}: this model takes no images (it has no image transform)")
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"{self.architecture}: preprocess_image expects a uint8 image, got dtype {image.dtype}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
            raise ValueError(f"{self.architecture}: preprocess_image expects an HxWx3 RGB (or HxW gray) image, "
                             f"got shape {image.shape}")
        out = self._preprocess(image[:, :, :3])
        spec = self.input
        assert out.shape == spec.shape and out.dtype == np.dtype(spec.dtype), (out.shape, out.dtype, spec)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable metadata (for a server's metadata endpoint)."""
        return {
            "architecture": self.architecture,
            "options": self.options,
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "num_classes": self.num_classes,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing,
        }

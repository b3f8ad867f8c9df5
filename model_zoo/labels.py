"""Class labels of the zoo's datasets.

ImageNet's synset names are not bundled (no label file is available offline): ImageNet models
label their 1000 classes ``class_0`` .. ``class_999`` in the order of tensorpack's
``ILSVRCMeta`` (the sorted synset ids of ILSVRC-2012, as in ``synsets.txt``). Map the index
with your own ``synset_words.txt`` when you need names.
"""
from __future__ import annotations

__all__ = ["DIGITS", "CIFAR10", "indexed_labels"]

#: MNIST / scikit-learn digits: class i is the digit i.
DIGITS: tuple[str, ...] = tuple(str(i) for i in range(10))

#: CIFAR-10 in the dataset's label order (batches.meta ``label_names``).
CIFAR10: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck")


def indexed_labels(n: int) -> tuple[str, ...]:
    """``('class_0', ..., 'class_<n-1>')`` for datasets whose names are not available offline."""
    return tuple(f"class_{i}" for i in range(n))

"""Writers of tiny dataset files in the standard formats (MNIST idx gzip, CIFAR Python 2 pickles)."""
import gzip
import io
import pickle
import struct

import numpy as np

__all__ = ["write_idx_images", "write_idx_labels", "py2_pickle", "cifar_images", "cifar_batch", "write_cifar10"]


def write_idx_images(path, images):
    n, rows, cols = images.shape
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">4I", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">2I", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes())


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the CIFAR files: every str/bytes as a Python 2 ``str``
    (BINSTRING), arrays rebuilt by ``numpy.core.multiarray._reconstruct``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def py2_pickle(obj):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_images(n, seed):
    return np.random.RandomState(seed).randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)


def cifar_batch(images, labels, label_key="labels"):
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # the files store each image as CHW rows
    return py2_pickle({"batch_label": "batch", label_key: list(labels), "data": rows,
                        "filenames": [f"img{k}.png" for k in range(len(labels))]})


def write_cifar10(root, per_batch=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        images, labels = cifar_images(per_batch, k), [(k + j) % 10 for j in range(per_batch)]
        (folder / name).write_bytes(cifar_batch(images, labels))
        written[name] = (images, labels)
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": [f"class{k}" for k in range(10)],
                                                       "num_cases_per_batch": per_batch, "num_vis": 3072}))
    return written

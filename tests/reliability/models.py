"""Pure-Python models for the reliability tests, behind the service's ``ServedModel`` protocol.

Each takes ``x``: float32 rows of ``width`` values and returns ``y = 2 * x`` and ``s = x.sum(1)``, so a
client can encode a request id in its rows and check, row by row, that it got its own rows back.

Fault injection is driven by the data (the *last* value of a row is the control value), so it works
the same in-thread and in a subprocess server:

* a row ending in ``FAIL`` (-1) makes the whole batch raise;
* a row ending in ``HANG`` (-2) blocks the batch for ``hang_s`` seconds (or until
  :meth:`EchoModel.release` is called, in-thread); :attr:`EchoModel.entered` is set once such a batch
  is inside the model, so an in-thread test can order its next steps on it instead of sleeping;
* a row ending in ``BADROWS`` (-3) makes the model return one row too few (the batcher must catch it);
* ``fail_every=k`` makes every k-th batch raise, whatever it holds;
* ``compute_s`` (+ ``per_row_s`` per row) is the sleep of every batch: a fixed compute time;
* ``gate`` (an Event, in-thread): every batch waits inside the model until the test sets it.

Every row that reaches the model is recorded by its first value in :attr:`EchoModel.seen`, so a test can
prove that a request refused before running (deadline, unavailable, cancelled) was never computed, and
:attr:`EchoModel.batch_ids` holds the set of those values per batch (which requests were batched together).
"""
from __future__ import annotations

import threading
import time

import numpy as np

from service.model import ModelConfig, TensorSpec

FAIL = -1.0
HANG = -2.0
BADROWS = -3.0


class EchoModel:
    def __init__(self, name="echo", width=3, compute_s=0.0, per_row_s=0.0, fail_every=0, hang_s=30.0,
                 version="1", max_sleep_s=60.0, markers=True, gate: threading.Event | None = None):
        self.name = name
        self.version = version
        self.architecture = "fake-echo"
        self.inputs = [TensorSpec("x", np.dtype("float32"), (width,))]
        self.outputs = [TensorSpec("y", np.dtype("float32"), (width,)), TensorSpec("s", np.dtype("float32"), ())]
        self.labels = None
        self.devices = ["/cpu:0"]
        self.compute_s = compute_s
        self.per_row_s = per_row_s
        self.fail_every = fail_every
        self.hang_s = hang_s
        self.max_sleep_s = max_sleep_s
        self.markers = markers          # False: control values are ordinary data (fuzzing)
        self._released = threading.Event()
        self.gate = gate
        self.entered = threading.Event()    # set when a batch holding a HANG row (or held by gate) is inside
        self._lock = threading.Lock()
        self.batches = 0
        self.failed_batches = 0
        self.batch_sizes: list[int] = []
        self.seen: list[float] = []         # the first value of every row computed (a request id)
        self.batch_ids: list[frozenset[float]] = []

    def release(self):
        """Unblock every hanging batch (now and later)."""
        self._released.set()

    @property
    def released(self) -> bool:
        """True once :meth:`release` (or close) was called: a HANG batch no longer blocks."""
        return self._released.is_set()

    def run_batch(self, replica, inputs):
        x = inputs["x"]
        with self._lock:
            self.batches += 1
            n = self.batches
            self.batch_sizes.append(len(x))
            self.seen.extend(x[:, 0].tolist())
            self.batch_ids.append(frozenset(x[:, 0].tolist()))
        if self.gate is not None:
            self.entered.set()
            self.gate.wait(self.max_sleep_s)
        ctrl = x[:, -1] if self.markers else np.zeros(len(x), x.dtype)
        if (ctrl == HANG).any():
            self.entered.set()
            self._released.wait(min(self.hang_s, self.max_sleep_s))
        sleep = self.compute_s + self.per_row_s * len(x)
        if sleep:
            time.sleep(min(sleep, self.max_sleep_s))
        if (ctrl == FAIL).any() or (self.fail_every and n % self.fail_every == 0):
            with self._lock:
                self.failed_batches += 1
            raise RuntimeError(f"injected failure in batch {n}")
        if (ctrl == BADROWS).any():
            return {"y": x[1:] * 2, "s": x[1:].sum(axis=1)}
        return {"y": x * 2, "s": x.sum(axis=1)}

    def close(self):
        self._released.set()


class ImageEcho(EchoModel):
    """An EchoModel that also takes uploaded images (mean of the first ``width`` red pixels)."""

    def __init__(self, name="imgecho", **kw):
        super().__init__(name, **kw)
        self.labels = [f"c{i}" for i in range(self.inputs[0].shape[0])]

    def preprocess_image(self, rgb):
        w = self.inputs[0].shape[0]
        flat = rgb[..., 0].reshape(-1).astype(np.float32)
        out = np.zeros(w, np.float32)
        out[: min(w, len(flat))] = flat[:w]
        return out


class Repository:
    """``scan()``/``load()``/``versions()`` over ready-made models. ``calls`` records every call, so a
    test can assert that hostile model names never reach the repository."""

    def __init__(self, models, broken=()):
        self.models = {m.name: m for m in models}
        self.broken = list(broken)          # names whose load fails (the model ends FAILED)
        self.calls: list[tuple] = []

    def scan(self):
        self.calls.append(("scan",))
        return [ModelConfig(n, "fake") for n in [*self.models, *self.broken]]

    def versions(self, name):
        self.calls.append(("versions", name))
        return [int(self.models[name].version)] if name in self.models else []

    def load(self, config, max_batch_size, version=None):
        self.calls.append(("load", config.name, version))
        if config.name in self.broken:
            raise ValueError(f"the weights of {config.name} are corrupt (injected)")
        return self.models[config.name]


def build(spec: dict):
    """Models from a JSON-able spec: ``[{"kind": "echo"|"image", "name": ..., **kwargs}]``."""
    out = []
    for m in spec:
        m = dict(m)
        kind = m.pop("kind", "echo")
        out.append((ImageEcho if kind == "image" else EchoModel)(**m))
    return out

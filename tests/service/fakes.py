"""Small pure-Python models behind the service's ``ServedModel`` protocol.

They stand in for TensorFlow models where a test is about the service itself (errors, batching
policy, failure isolation); the end-to-end tests use the real bundled model.

Tests order events with :class:`threading.Event` (``FakeModel.gate``/``FakeModel.entered``) and
:func:`wait_until`, never with sleeps or elapsed-time assertions: a loaded CI machine stretches every
duration, but not the order in which things happen.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from service.model import ModelConfig, TensorSpec

__all__ = ["PATIENCE_S", "FakeModel", "FakeRepository", "HeldModel", "VersionedRepository", "doubler", "pixels", "scaler",
           "wait_until"]

# How long a test waits for something that must happen before it gives up. Only a failing test ever
# waits this long, so it is generous: CI machines under load must not turn a slow pass into a failure.
PATIENCE_S = 60.0


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = PATIENCE_S, poll_s: float = 0.01):
    """Poll ``predicate`` until it returns something truthy (and return that); fail with ``what`` after
    ``timeout_s``. For waiting on a state (a queue gauge, readiness), not for ordering by elapsed time."""
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


class FakeModel:
    def __init__(self, name, inputs, fn, version="1", labels=None, delay_s=0.0, fail_marker=None):
        self.name = name
        self.version = version
        self.architecture = "fake"
        self.inputs = inputs
        self.labels = labels
        self.devices = ["/cpu:0"]
        self._fn = fn
        self.delay_s = delay_s
        self.fail_marker = fail_marker
        self.gate = threading.Event()       # cleared by a test: batches wait inside run_batch until it is set
        self.gate.set()
        self.entered = threading.Event()    # set whenever a batch is inside run_batch (before the gate)
        self.batch_sizes: list[int] = []
        self.seen: list[np.ndarray] = []
        out = fn({s.name: np.zeros((1, *s.shape), s.dtype) for s in inputs})
        self.outputs = [TensorSpec(k, v.dtype, tuple(v.shape[1:])) for k, v in out.items()]

    def run_batch(self, replica, inputs):
        self.entered.set()
        self.gate.wait(PATIENCE_S)
        first = next(iter(inputs.values()))
        self.batch_sizes.append(len(first))
        self.seen.append(first.copy())
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_marker is not None and any((v == self.fail_marker).any() for v in inputs.values()):
            raise RuntimeError("injected failure")
        return self._fn(inputs)

    def close(self):
        pass


def doubler(name="double", **kw):
    return FakeModel(name, [TensorSpec("x", np.dtype("float32"), (3,))],
                     lambda d: {"y": d["x"] * 2, "sum": d["x"].sum(axis=1)}, **kw)


def pixels(name="pixels", **kw):
    """Takes 2x2 uint8 'images'; 'prob' says whether the mean pixel is dark (a) or bright (b)."""
    def fn(d):
        mean = d["image"].reshape(len(d["image"]), -1).mean(axis=1).astype(np.float32) / 255.0
        return {"mean": mean * 255.0, "prob": np.stack([1.0 - mean, mean], axis=1).astype(np.float32)}

    m = FakeModel(name, [TensorSpec("image", np.dtype("uint8"), (2, 2), (0, 255))], fn, labels=["a", "b"], **kw)
    # an "image model": uploads are reduced to the red channel of their top-left 2x2 pixels
    m.preprocess_image = lambda rgb: np.ascontiguousarray(rgb[:2, :2, 0])
    return m


class FakeRepository:
    """scan()/load() over a dict of ready-made models; ``broken`` maps names to scan errors,
    ``fail_load`` names models whose load raises. ``load_gate`` (an Event), when given, holds every
    load until the test sets it; ``loading`` is set as soon as a load has started. ``unchecked_ranges``
    names models whose config says ``validate_range: false``."""

    def __init__(self, models, broken=None, fail_load=(), load_delay_s=0.0, load_gate=None, unchecked_ranges=()):
        self.models = {m.name: m for m in models}
        self.broken = broken or {}
        self.fail_load = set(fail_load)
        self.load_delay_s = load_delay_s
        self.load_gate = load_gate
        self.loading = threading.Event()
        self.unchecked_ranges = set(unchecked_ranges)

    def scan(self):
        out = [ModelConfig(n, "fake", validate_range=n not in self.unchecked_ranges) for n in self.models]
        out += [ModelConfig(n, "fake") for n in self.fail_load]
        out += list(self.broken.items())
        return out

    def versions(self, name):
        return [1]

    def load(self, config, max_batch_size, version=None):
        self.loading.set()
        if self.load_gate is not None and not self.load_gate.wait(PATIENCE_S):
            raise TimeoutError("the test never opened load_gate")
        time.sleep(self.load_delay_s)
        if config.name in self.fail_load:
            raise ValueError(f"checkpoint for {config.name} is corrupt")
        return self.models[config.name]


def scaler(name="scale", factor=1.0, version="1", **kw):
    """``y = factor * x`` on rows of 3 float32 values, so each version's answers can be told apart; it
    also takes uploaded images (the red channel of the first 3 pixels of the top row)."""
    m = FakeModel(name, [TensorSpec("x", np.dtype("float32"), (3,))], lambda d: {"y": d["x"] * np.float32(factor)},
                  version=version, **kw)
    m.preprocess_image = lambda rgb: np.ascontiguousarray(rgb[0, :3, 0], dtype=np.float32)
    return m


class HeldModel:
    """Wraps a FakeModel so that tests order events on it instead of sleeping: ``entered`` is set when
    a batch starts, ``finished`` when one returns, ``closed`` by close(). While ``held`` (the default),
    batches block in run_batch until ``release()`` (or ``hold_s``, a safety net); close() releases too,
    as closing a TensorFlow session cancels the step it runs."""

    def __init__(self, model: FakeModel, held: bool = True, hold_s: float = 120.0):
        self._model = model
        self.hold_s = hold_s
        self.entered = threading.Event()
        self.finished = threading.Event()
        self.closed = threading.Event()
        self._released = threading.Event()
        if not held:
            self._released.set()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def release(self):
        self._released.set()

    def run_batch(self, replica, inputs):
        self.entered.set()
        self._released.wait(self.hold_s)
        out = self._model.run_batch(replica, inputs)
        self.finished.set()
        return out

    def close(self):
        self.closed.set()
        self._released.set()


class VersionedRepository:
    """One model ``name`` with numbered versions that a test edits while the server runs, as an operator
    edits a repository on disk: ``models[v]`` is the model version ``v`` loads (None: a corrupt version
    whose load raises); ``touch(v)`` changes the version's files (its fingerprint); ``loads`` records
    every version load() was called with (None = the newest). ``config`` holds the config's other keys
    (``version_policy``, ``version_labels``, ...); a test edits it as an operator edits config.json."""

    def __init__(self, name, models: dict, **config):
        self.name = name
        self.models = dict(models)
        self.generation = {v: 0 for v in self.models}
        self.loads: list = []
        self.config = config

    def scan(self):
        return [ModelConfig(self.name, "fake", **self.config)]

    def versions(self, name):
        return sorted(self.models) if name == self.name else []

    def fingerprint(self, name, version):
        return (version, self.generation.get(version))

    def touch(self, version):
        self.generation[version] = self.generation.get(version, 0) + 1

    def load(self, config, max_batch_size, version=None):
        self.loads.append(version)
        v = max(self.models) if version is None else version
        if self.models.get(v) is None:
            raise ValueError(f"version {v} of {config.name} is corrupt")
        return self.models[v]

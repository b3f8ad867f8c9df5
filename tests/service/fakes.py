"""Small pure-Python models behind the service's ``ServedModel`` protocol.

They stand in for TensorFlow models where a test is about the service itself (errors, batching
policy, failure isolation); the end-to-end tests use the real bundled model.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from service.model import ModelConfig, TensorSpec


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
        self.gate = threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []
        self.seen: list[np.ndarray] = []
        out = fn({s.name: np.zeros((1, *s.shape), s.dtype) for s in inputs})
        self.outputs = [TensorSpec(k, v.dtype, tuple(v.shape[1:])) for k, v in out.items()]

    def run_batch(self, replica, inputs):
        self.gate.wait(10)
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
    ``fail_load`` names models whose load raises."""

    def __init__(self, models, broken=None, fail_load=(), load_delay_s=0.0):
        self.models = {m.name: m for m in models}
        self.broken = broken or {}
        self.fail_load = set(fail_load)
        self.load_delay_s = load_delay_s

    def scan(self):
        out = [ModelConfig(n, "fake") for n in self.models]
        out += [ModelConfig(n, "fake") for n in self.fail_load]
        out += list(self.broken.items())
        return out

    def versions(self, name):
        return [1]

    def load(self, config, max_batch_size, version=None):
        time.sleep(self.load_delay_s)
        if config.name in self.fail_load:
            raise ValueError(f"checkpoint for {config.name} is corrupt")
        return self.models[config.name]

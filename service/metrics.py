"""Prometheus metrics, on an injected ``CollectorRegistry`` (tests pass a fresh one).

Multi-process server (:mod:`service.supervisor`): every process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen by that variable at
import time) and each front end's ``/metrics`` reads them all (:meth:`Metrics.multiprocess`):
counters and histograms are summed over the processes (a restarted front end's counts are kept),
gauges are summed over live processes. One difference from a single process: a model's previous
``tpserve_model_info`` series stay listed with value 0 instead of disappearing.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "ModelObserver"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Every metric the service exports. Names carry units; labels are bounded (model, version, route, code).
    The batch-level series (queue, compute, batch size, queued rows) carry the model version that ran them:
    each loaded version has its own batcher."""

    def __init__(self, registry: CollectorRegistry | None = None):
        # ``registry``: where the metrics are registered and what /metrics exports (see multiprocess())
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._request_children: dict = {}
        self.requests = Counter("tpserve_requests_total", "Requests answered, by model, route and HTTP status",
                                ["model", "route", "code"], registry=r)
        self.request_seconds = Counter("tpserve_request_seconds_total",
                                       "Seconds from arrival to response summed over the requests answered, by model, "
                                       "route and HTTP status (the mean by status: divide by tpserve_requests_total)",
                                       ["model", "route", "code"], registry=r)
        self.request_duration = Histogram("tpserve_request_duration_seconds",
                                          "Time from request arrival to response, by model and route",
                                          ["model", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_duration = Histogram("tpserve_queue_duration_seconds",
                                        "Time a request waited in the batch queue before its batch ran",
                                        ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_duration = Histogram("tpserve_inference_duration_seconds",
                                            "Compute time of one executed batch, by model version and device",
                                            ["model", "version", "device"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_executions = Counter("tpserve_batch_executions_total",
                                        "Batches executed, by model version and exact batch size (rows)",
                                        ["model", "version", "batch_size"], registry=r)
        self.batch_compute_seconds = Counter("tpserve_batch_compute_seconds_total",
                                             "Compute seconds of the executed batches, by model version and exact "
                                             "batch size", ["model", "version", "batch_size"], registry=r)
        self.batch_size = Histogram("tpserve_batch_size", "Rows per executed batch", ["model", "version"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue_rows = Gauge("tpserve_queue_rows", "Rows waiting in the batch queue", ["model", "version"],
                                registry=r,
                                multiprocess_mode="livesum")
        self.rejected = Counter("tpserve_rejected_total",
                                "Requests refused before running, by reason (queue_full, too_large, deadline, shutting_down, "
                                "not_ready, unavailable)", ["model", "reason"], registry=r)
        self.model_info = Gauge("tpserve_model_info", "1 for each loaded model version (READY), or for a model with "
                                "none loaded its state (version 'none')", ["model", "version", "state"], registry=r,
                                multiprocess_mode="livesum")
        self.model_load_seconds = Gauge("tpserve_model_load_seconds",
                                        "Seconds the last load (build + restore + warm-up) of a model took", ["model"],
                                        registry=r, multiprocess_mode="livemax")
        self.model_load_failures = Counter("tpserve_model_load_failures_total", "Model versions that failed to load",
                                           ["model"], registry=r)
        self.abandoned_batches = Counter("tpserve_abandoned_batches_total",
                                         "Batches still running when their model was stopped (shutdown, or the old "
                                         "version after a reload) at TPSERVE_SHUTDOWN_TIMEOUT_S: abandoned, their "
                                         "requests answered 503", ["model"], registry=r)

    @classmethod
    def multiprocess(cls) -> Metrics:
        """Metrics of one process of the multi-process server: recorded in ``PROMETHEUS_MULTIPROC_DIR``;
        ``registry`` (what /metrics exports) collects every process's files."""
        from prometheus_client import multiprocess

        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise RuntimeError("Metrics.multiprocess() needs PROMETHEUS_MULTIPROC_DIR (set by the supervisor)")
        metrics = cls(CollectorRegistry())      # registered privately: their values live in the files
        metrics.registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(metrics.registry)
        return metrics

    def observe_request(self, model: str, route: str, code: str, seconds: float):
        """Count one answered request (label children cached: this runs on every request)."""
        key = (model, route, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = (self.requests.labels(model, route, code),
                                                    self.request_duration.labels(model, route),
                                                    self.request_seconds.labels(model, route, code))
        child[0].inc()
        child[1].observe(seconds)
        child[2].inc(seconds)

    def observer(self, model: str, devices: list[str], version: str = "") -> ModelObserver:
        return ModelObserver(self, model, devices, version)

    def set_model_states(self, model: str, states: dict[str, str]):
        """The model's ``tpserve_model_info`` series: 1 for each {version: state} given, none other."""
        wanted = set(states.items())
        for sample in list(self.model_info.collect()[0].samples):
            labels = sample.labels
            if labels.get("model") == model and (labels["version"], labels["state"]) not in wanted:
                if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    # the value lives in a file, which removal would not clear: the series stays, at 0
                    self.model_info.labels(model, labels["version"], labels["state"]).set(0)
                else:
                    self.model_info.remove(model, labels["version"], labels["state"])
        for version, state in states.items():
            self.model_info.labels(model, version, state).set(1)


class ModelObserver:
    """The batcher's view of the metrics for one model version (knows the device of each replica)."""

    def __init__(self, metrics: Metrics, model: str, devices: list[str], version: str = ""):
        self._m = metrics
        self._model = model
        self._queue_rows = metrics.queue_rows.labels(model, version)
        self._batch = metrics.batch_size.labels(model, version)
        self._queue = metrics.queue_duration.labels(model, version)
        self._infer = [metrics.inference_duration.labels(model, version, d) for d in devices]
        self._version = version
        self._by_size: dict[int, tuple] = {}     # batch size -> (executions, compute seconds) children

    def on_batch(self, rows, requests, queue_waits_s, compute_s, replica):
        self._batch.observe(rows)
        by_size = self._by_size.get(rows)
        if by_size is None:
            size = str(rows)
            by_size = self._by_size[rows] = (self._m.batch_executions.labels(self._model, self._version, size),
                                             self._m.batch_compute_seconds.labels(self._model, self._version, size))
        by_size[0].inc()
        by_size[1].inc(compute_s)
        for w in queue_waits_s:
            self._queue.observe(w)
        self._infer[replica].observe(compute_s)

    def on_queue_rows(self, rows):
        self._queue_rows.set(rows)

    def on_reject(self, reason):
        self._m.rejected.labels(self._model, reason).inc()

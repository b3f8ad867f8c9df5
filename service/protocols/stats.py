"""Triton's statistics extension, read from the Prometheus metrics (the numbers ``/metrics`` exports).

* ``GET /v2/models/stats``: every model
* ``GET /v2/models/{name}/stats``: every loaded version of one model; ``GET
  /v2/models/{name}/versions/{v}/stats``: one version, by number or label (one that is not loaded is
  404, as everywhere else)
* the gRPC ``ModelStatistics`` RPC answers the same numbers (:func:`model_statistics`, used by
  :mod:`service.grpc`).

The values are computed from the samples of the metrics registry (``registry.collect()``), never from
metric objects, so the same code reads a multi-process deployment's aggregating collector. Triton's
field names; durations in nanoseconds, counts since the metrics began (the process start, or the
multi-process directory's creation):

========================================  ===================================================================
``inference_stats.success`` / ``fail``     count: ``tpserve_requests_total`` of the model with a 2xx code /
                                           any other code (every route, gRPC included); ns:
                                           ``tpserve_request_seconds_total`` of the same requests
``inference_stats.queue``                  ``tpserve_queue_duration_seconds``: one per request that reached a
                                           batch
``inference_stats.compute_infer``          ``tpserve_inference_duration_seconds`` over every device: one per
                                           executed batch (tpserve times batches, not requests), so ns/count is
                                           the mean compute time of a batch
``compute_input`` / ``compute_output``     not measured apart from the model call: the compute_infer count with
                                           0 ns (inputs and outputs are part of compute_infer)
``cache_hit`` / ``cache_miss``             0 (no response cache)
``execution_count`` / ``inference_count``  ``tpserve_batch_size``: batches executed / rows in them
``batch_stats``                            per exact batch size: ``tpserve_batch_executions_total`` (the
                                           compute_infer count) and ``tpserve_batch_compute_seconds_total``
                                           (its ns); compute_input/compute_output: that count with 0 ns
``last_inference``                         0 (no metric holds a timestamp)
========================================  ===================================================================

One entry per loaded version (a model with none loaded: one entry, version ""). The batch-level numbers
(queue, compute, executions, batch sizes) are that version's: those metrics carry a ``version`` label.
``success``/``fail`` come from ``tpserve_requests_total``, counted per model (a request's version is
not known when it fails before routing): every version of a model reports the model's counts.
"""
from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..errors import ModelNotReady
from ..http import json_response
from ..schemas import error_responses

__all__ = ["router", "model_statistics", "read_samples"]

router = APIRouter(tags=["KServe v2 protocol"])



class StatisticDuration(BaseModel):
    count: int = Field(..., description="how many")
    ns: int = Field(..., description="their cumulative duration in nanoseconds")


class InferStatistics(BaseModel):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class InferBatchStatistics(BaseModel):
    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration


class ModelStatistics(BaseModel):
    name: str
    version: str = Field(..., description="the loaded version these numbers are for ('' while none is loaded)")
    last_inference: int = Field(0, description="always 0: no metric holds a timestamp")
    inference_count: int = Field(..., description="rows computed")
    execution_count: int = Field(..., description="batches executed")
    inference_stats: InferStatistics
    batch_stats: list[InferBatchStatistics]


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


Samples = dict[str, list[tuple[dict[str, str], float]]]


def read_samples(registry) -> Samples:
    """Every sample of ``registry`` (a ``CollectorRegistry``, or anything with ``collect()``), by sample name."""
    out: Samples = defaultdict(list)
    for family in registry.collect():
        for s in family.samples:
            out[s.name].append((s.labels, s.value))
    return out


def _total(samples: Samples, name: str, model: str, pred=None, version: str | None = None) -> float:
    """Sum of the samples ``name`` of ``model`` (of its ``version`` only, when given) that ``pred`` accepts."""
    return sum(v for labels, v in samples.get(name, ()) if labels.get("model") == model
               and (version is None or labels.get("version") == version) and (pred is None or pred(labels)))


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _duration(count: float, seconds: float) -> dict:
    return {"count": int(round(count)), "ns": _ns(seconds)}


def _success(labels) -> bool:
    return labels.get("code", "").startswith("2")


def _batch_stats(samples: Samples, model: str, version: str) -> list[dict]:
    counts: dict[int, float] = defaultdict(float)
    seconds: dict[int, float] = defaultdict(float)
    for sample, into in (("tpserve_batch_executions_total", counts), ("tpserve_batch_compute_seconds_total", seconds)):
        for labels, v in samples.get(sample, ()):
            if labels.get("model") == model and labels.get("version") == version:
                into[int(labels["batch_size"])] += v
    out = []
    for size in sorted(counts):
        zero = _duration(counts[size], 0.0)       # inputs and outputs are not timed apart from the model call
        out.append({"batch_size": size, "compute_input": zero,
                    "compute_infer": _duration(counts[size], seconds[size]), "compute_output": zero})
    return out


def model_stats(samples: Samples, entry, version: str) -> dict:
    """Triton's ``ModelStatistics`` (as JSON) for one version of a model entry ("": none loaded)."""
    name = entry.name
    requests_ok = _total(samples, "tpserve_requests_total", name, _success)
    requests_failed = _total(samples, "tpserve_requests_total", name, lambda labels: not _success(labels))
    ok_s = _total(samples, "tpserve_request_seconds_total", name, _success)
    failed_s = _total(samples, "tpserve_request_seconds_total", name, lambda labels: not _success(labels))

    def of_version(sample_name: str) -> float:
        return _total(samples, sample_name, name, version=version)

    executions = of_version("tpserve_inference_duration_seconds_count")
    compute = _duration(executions, of_version("tpserve_inference_duration_seconds_sum"))
    none = {"count": 0, "ns": 0}
    batches = of_version("tpserve_batch_size_count")
    return {
        "name": name,
        "version": version,
        "last_inference": 0,
        "inference_count": int(round(of_version("tpserve_batch_size_sum"))),
        "execution_count": int(round(batches)),
        "inference_stats": {
            "success": _duration(requests_ok, ok_s),
            "fail": _duration(requests_failed, failed_s),
            "queue": _duration(of_version("tpserve_queue_duration_seconds_count"),
                               of_version("tpserve_queue_duration_seconds_sum")),
            "compute_input": {"count": compute["count"], "ns": 0},
            "compute_infer": compute,
            "compute_output": {"count": compute["count"], "ns": 0},
            "cache_hit": none,
            "cache_miss": none,
        },
        "batch_stats": _batch_stats(samples, name, version),
    }


def model_statistics(manager, registry, name: str | None = None, version: str | None = None) -> dict:
    """``{"model_stats": [...]}``: every loaded version of every model (``name`` None), or of one; with
    ``version`` (a number or label), that version only when it is loaded (else the manager's 404, as for
    every pinned request)."""
    if name is None:
        entries = [manager.entries[n] for n in sorted(manager.entries)]
        rows = [(e, v) for e in entries for v in (e.versions or [""])]
    else:
        entry = manager.find(name)
        if version is None:
            rows = [(entry, v) for v in entry.versions or [""]]
        else:
            if not entry.versions:
                raise ModelNotReady(f"model {entry.name!r} is {entry.state}: no version is loaded", field="version")
            key = manager.resolve_version(entry, version)
            if key not in entry.slots:
                raise manager.version_not_loaded(entry, version)
            rows = [(entry, key)]
    samples = read_samples(registry)
    return {"model_stats": [model_stats(samples, e, v) for e, v in rows]}


_STATS = {"response_model": ModelStatisticsResponse}


@router.get("/v2/models/stats", summary="Statistics of every model (Triton's statistics extension)", **_STATS)
async def all_stats(request: Request):
    return json_response(model_statistics(request.app.state.manager, request.app.state.metrics.registry))


@router.get("/v2/models/{name}/stats", summary="Statistics of one model", responses=error_responses(404),
            **_STATS)
async def stats(request: Request, name: str):
    return json_response(model_statistics(request.app.state.manager, request.app.state.metrics.registry, name))


@router.get("/v2/models/{name}/versions/{version}/stats", summary="Statistics of one model (pinned version)",
            responses=error_responses(404, 503), **_STATS)
async def version_stats(request: Request, name: str, version: str):
    return json_response(model_statistics(request.app.state.manager, request.app.state.metrics.registry, name,
                                          version))

"""The service's one typed configuration (the only module that reads the environment).

Sources, highest priority first: keyword arguments, ``TPSERVE_*`` environment variables, the
optional config file named by ``TPSERVE_CONFIG_FILE`` (YAML or JSON), then the defaults below.
Per-model batching options can also be set in each model's ``config.(yaml|json)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["Settings", "BatchingOptions", "load_config_file"]

DEFAULT_REPOSITORY = Path("model_repository")  # relative to the working directory (make serve runs from the repo root)


class BatchingOptions(BaseModel):
    """Dynamic batching for one model (defaults apply to every model unless its config overrides)."""

    max_batch_size: int = Field(64, ge=1, le=4096, description="most rows in one executed batch")
    max_queue_delay_ms: float = Field(0.0, ge=0, le=10_000, description=(
        "how long a batch may wait to fill while a replica is free; 0 = dispatch at once "
        "(batches still form while every replica is busy)"))
    max_queue_size: int = Field(2048, ge=1, description="rows allowed to wait per model; beyond it: 429")
    inflight_per_replica: int = Field(1, ge=1, le=16, description="batches running at once on one replica")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or JSON file into a dict, with errors that name the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"cannot read config file {str(p)!r}: {e.strerror}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - report any parse error with the file name
        raise ValueError(f"config file {str(p)!r} is not valid {p.suffix.lstrip('.') or 'JSON'}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at top level, got {type(data).__name__}")
    return data


class _ConfigFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls, path):
        super().__init__(settings_cls)
        self._data = load_config_file(path) if path else {}

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return self._data.get(field_name), field_name, False

    def __call__(self):
        return dict(self._data)


class Settings(BaseSettings):
    """tpserve settings. Every field can be set as ``TPSERVE_<FIELD>`` (nested: ``TPSERVE_BATCHING__MAX_BATCH_SIZE``)."""

    model_config = SettingsConfigDict(env_prefix="TPSERVE_", env_nested_delimiter="__", extra="forbid",
                                      protected_namespaces=(), env_parse_none_str="null")

    config_file: Path | None = Field(None, description="optional YAML/JSON file with these settings")
    host: str = Field("127.0.0.1", description="bind address")
    workers: int | None = Field(None, ge=0, le=64, description=(
        "HTTP front-end processes beside the engine process (which owns TensorFlow and the batchers); "
        "null = one per 2 CPUs, 1 to 8; 0 = everything in one process (embedded mode)"))
    shm_arena_mb: int = Field(32, ge=1, le=4096, description=(
        "shared memory per front-end process for tensors on their way to and from the engine (MiB); "
        "larger requests use a one-off segment"))
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    grpc_port: int = Field(8001, ge=0, le=65535, description=(
        "TCP port of the KServe v2 / Triton gRPC endpoint (inference.GRPCInferenceService), on the same host; "
        "0 = no gRPC endpoint"))
    model_repository: Path = Field(DEFAULT_REPOSITORY, description="<repo>/<model>/config.(yaml|json) + <version>/")
    batching: BatchingOptions = Field(default_factory=BatchingOptions)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="request bodies above this get 413")
    max_rows_per_request: int = Field(4096, ge=1, description="rows in one request; above it: 400")
    header_timeout_s: float = Field(10.0, gt=0, description=(
        "from a connection's start (or a keep-alive request's first byte) to the end of its headers; a silent "
        "connection is then closed, a half-sent request gets 408"))
    max_header_count: int = Field(100, ge=1, description="request headers allowed; above: 431 and the connection closes")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description=(
        "request line + headers, in bytes; above: 431 and the connection closes"))
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this long")
    max_connections: int = Field(2048, ge=1, description=(
        "open connections (or requests in progress) allowed; beyond: 503 and the connection closes"))
    body_timeout_s: float = Field(30.0, gt=0, description=(
        "a request body must fully arrive within this many seconds of the handler starting to read it; "
        "above it: 408 and the connection is closed (slow or stalled uploads cannot hold a request open)"))
    default_timeout_ms: float | None = Field(30_000, gt=0, description=(
        "deadline for a request that sets none (body timeout_ms or X-Request-Timeout-Ms); "
        "null (TPSERVE_DEFAULT_TIMEOUT_MS=null) = no deadline"))
    device: str = Field("auto", description="'auto' (every GPU, else CPU), 'cpu', or 'gpu:0,1'")
    intra_op_threads: int = Field(0, ge=0, description=(
        "TensorFlow intra-op threads per session; 0 = automatic: on CPU every usable core (cgroup CPU quotas "
        "are honoured), but one in embedded mode (TPSERVE_WORKERS=0: the event loop needs it); on GPU "
        "TensorFlow's default"))
    inter_op_threads: int = Field(0, ge=0, description=(
        "TensorFlow inter-op threads per session; 0 = automatic (1 on <= 2 CPUs, else 2; GPU: TF default)"))
    max_image_pixels: int = Field(40_000_000, ge=1, description="decoded image size limit (width*height); above: 413")
    max_image_side: int = Field(10_000, ge=1, description=(
        "image width and height limit, each checked from the header before decoding; above: 413"))
    poll_interval_s: float = Field(10.0, ge=0, description=(
        "how often the repository is polled for new versions and config changes (model_control 'poll'); 0 = never"))
    model_control: Literal["poll", "explicit", "none"] = Field("poll", description=(
        "like Triton's --model-control-mode. 'poll': every model at start, the repository polled every "
        "poll_interval_s, the load API polls one model now, unload is refused; 'explicit': the models of "
        "startup_models at start, no polling, load and unload through the API (HTTP and gRPC); 'none': every "
        "model at start, nothing changes afterwards (load and unload refused with 409)"))
    startup_models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"], description=(
        "model_control 'explicit' only: the models loaded at start ('*' = all, empty = none, like Triton's "
        "--load-model; comma-separated in TPSERVE_STARTUP_MODELS)"))
    unhealthy_after_failed_batches: int = Field(5, ge=0, description=(
        "after this many consecutive failed batches a model is reported UNAVAILABLE (readiness 503) until a "
        "batch succeeds again; 0 = never"))
    liveness_stuck_batch_s: float = Field(600.0, ge=0, description=(
        "/healthz answers 503 when a batch has been running this long, so an orchestrator restarts a "
        "process whose TensorFlow call hangs for good (readiness reacts earlier, at stuck_batch_timeout_s); "
        "0 = never"))
    stuck_batch_timeout_s: float = Field(60.0, ge=0, description=(
        "a batch running longer than this marks its model UNAVAILABLE (readiness 503); while every replica slot "
        "is stuck, new requests get 503 at once instead of waiting for their deadline; 0 = no watchdog"))
    drain_grace_s: float = Field(5.0, ge=0, description=(
        "after SIGTERM, readiness is 503 at once; inference requests are still accepted for this long "
        "(load balancers notice), then refused with 503"))
    shutdown_timeout_s: float = Field(30.0, gt=0, description="after SIGTERM, queued and running work gets this long to finish")
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False, description=(
        "bearer tokens; when set, inference and repository endpoints need 'Authorization: Bearer <key>' "
        "(comma-separated in TPSERVE_API_KEYS)"))
    open_paths: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["/healthz", "/readyz", "/metrics", "/v2/health/live",
                                                           "/v2/health/ready"],
                                  description="paths that never need an API key")
    docs: Literal["auto", "on", "off"] = Field("auto", description=(
        "serve /docs, /redoc and /openapi.json: 'auto' = only when no API keys are set, 'on' = always, "
        "'off' = never. When served they need no key (the schema holds no secret; with keys set it declares "
        "the bearer scheme, so the docs' Authorize button takes a key for 'Try it out')"))
    warmup: bool = Field(True, description="run every power-of-two batch size up to max_batch_size before ready")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="logging level")

    @field_validator("api_keys", "open_paths", "startup_models", mode="before")
    @classmethod
    def _split_csv(cls, v):
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("auto", "cpu"):
            return v
        if v.startswith("gpu:"):
            ids = v[4:].split(",")
            if ids and all(i.strip().isdigit() for i in ids):
                return "gpu:" + ",".join(i.strip() for i in ids)
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu:<ids>' like 'gpu:0,1', got {v!r}")

    def device_list(self, gpu_count: int) -> list[str]:
        """TensorFlow device strings for the replicas, given how many GPUs are visible."""
        if self.device == "cpu" or (self.device == "auto" and gpu_count == 0):
            return ["/cpu:0"]
        if self.device == "auto":
            return [f"/gpu:{i}" for i in range(gpu_count)]
        ids = [int(i) for i in self.device[4:].split(",")]
        missing = [i for i in ids if i >= gpu_count]
        if missing:
            raise ValueError(f"device {self.device!r} asks for GPU(s) {missing} but only {gpu_count} are visible")
        return [f"/gpu:{i}" for i in ids]

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        import os

        path = None
        try:
            path = init_settings().get("config_file")
        except Exception:  # noqa: BLE001
            path = None
        path = path or os.environ.get("TPSERVE_CONFIG_FILE")
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, path), file_secret_settings)

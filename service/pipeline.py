"""One request pipeline: every inference format is a codec on the same path.

::

    codec.prepare -> [the path's model] -> read the body -> codec.parse -> [the body's model]
      -> codec.decode -> check_batch (+ check_outputs) -> deadline -> infer
      -> no NaN/Inf as JSON -> codec.encode

A :class:`Codec` (one per wire format: ``/predict`` JSON, ``.npy`` and image bodies in
:mod:`service.protocols.predict`; TF Serving ``:predict``/``:classify`` in
:mod:`service.protocols.tfserving`; KServe v2 JSON and binary in :mod:`service.protocols.kserve`) only
turns bytes into arrays and outputs into bytes. What every format shares lives here once: the body limit,
metrics (:func:`service.http.instrument`), model and version resolution, the checks every input gets
(:func:`service.validation.check_batch`: shape, dtype, finite, declared range, one batch size, the row
limit), unknown output names, the deadline, inference with its version pin, and the rule that an
output holding NaN or Inf is never sent as JSON (``null`` with a 200 would read as an answer): it is a
500 naming the output, and the codec's ``hint`` says how to get it anyway (v2 binary data).

Errors are raised as domain exceptions and mapped to HTTP by :mod:`service.http`.
"""
from __future__ import annotations

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from .http import content_type, deadline_from, finite_outputs, instrument, multipart_file, read_body
from .images import image_row, run_image_work
from .inference import infer
from .validation import check_batch, check_outputs

__all__ = ["Call", "Codec", "run", "image_upload"]


class Call:
    """One inference request on its way through :func:`run`: what the codec decoded, for the shared
    stages and for its own ``encode``. Slots only: one small object per request."""

    __slots__ = ("request", "settings", "manager", "name", "version", "body", "payload", "field", "fields",
                 "preprocessed", "wanted", "wanted_field", "timeout_ms", "top_k", "state")

    def __init__(self, request: Request, settings, manager, name: str | None, version: str | None):
        self.request = request
        self.settings = settings
        self.manager = manager
        self.name = name                    # the model: from the path, else set by the codec
        self.version = version              # a version pin (None: whichever is served)
        self.body = b""
        self.payload: dict | None = None    # the request's JSON object, for formats that have one
        self.field = "inputs"               # where the inputs are (errors about the whole batch name it)
        self.fields: dict[str, str] | None = None   # input -> where it is, when not "{field}.{name}"
        self.preprocessed: tuple[str, ...] = ()      # inputs the server made from an uploaded image
        self.wanted: list[str] | None = None        # output names the client asked for (None: every one)
        self.wanted_field = "outputs"
        self.timeout_ms = None              # the body's deadline; else the X-Request-Timeout-Ms header
        self.top_k = 5
        self.state = None                   # the codec's own (TF Serving: the row format; v2: the outputs asked for)


class Codec:
    """A wire format. Subclasses override the hooks they need; one instance serves every request
    (per-request state lives on the :class:`Call`)."""

    route = ""    # the metrics label: tpserve_requests_total{route=...}
    hint = ""     # appended to the 500 for NaN/Inf outputs: how the client can get them anyway

    def prepare(self, call: Call) -> None:
        """Before the body is read: refuse what the path and query string alone make invalid."""

    def body_budget(self, call: Call):
        """The :class:`~service.validation.JsonBudget` of a JSON body, checked while it is read (None: not
        JSON, or no bound)."""
        return None

    def parse(self, call: Call) -> None:
        """After the body is read, before the model is resolved: set ``call.name``/``call.version``
        when the body names them."""

    async def decode(self, call: Call, model) -> dict[str, np.ndarray]:
        """The body -> one array per input of ``model`` (as sent: :func:`run` checks them), setting
        ``call.wanted``/``timeout_ms``/``fields``/... as the format says."""
        raise NotImplementedError

    def json_outputs(self, call: Call, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs the answer carries as JSON numbers (refused when they hold NaN/Inf)."""
        return out

    def encode(self, call: Call, entry, out: dict[str, np.ndarray], served: str) -> Response:
        """The answer: ``out`` as computed by version ``served`` of ``entry``."""
        raise NotImplementedError


def _validates_range(entry) -> bool:
    # a front-end's mirror entry may carry a config without the key: the default (check) applies
    return getattr(entry.config, "validate_range", True)


async def run(request: Request, codec: Codec, name: str | None = None, version: str | None = None) -> Response:
    """Serve one inference request in ``codec``'s format.

    ``name``/``version``: the model (and version pin) the path names, resolved before the body is read
    (a request to an unknown model costs no body); ``None``: the codec names it (``/predict``: the query
    string or the body)."""
    app = request.app.state
    settings, manager = app.settings, app.manager
    with instrument(app.metrics, codec.route) as obs:
        call = Call(request, settings, manager, name, version)
        codec.prepare(call)
        entry = None
        if name is not None:
            entry = manager.get(name, version)
            obs.model = entry.name
        call.body = await read_body(request, settings.max_body_bytes, budget=codec.body_budget(call),
                                    model=call.name)
        codec.parse(call)
        if entry is None:
            entry = manager.get(call.name, call.version)
            obs.model = entry.name
        model = entry.model
        arrays = check_batch(model.inputs, await codec.decode(call, model), settings.max_rows_per_request,
                             call.field, call.fields, _validates_range(entry), call.preprocessed)
        if call.wanted is not None:
            check_outputs(model.outputs, call.wanted, call.wanted_field)
        deadline = deadline_from(call.timeout_ms, request.headers.get("x-request-timeout-ms"),
                                 settings.default_timeout_ms)
        out, served = await infer(manager, entry, arrays, deadline, call.version)
        finite_outputs(codec.json_outputs(call, out), codec.hint)
        return codec.encode(call, entry, out, served)


async def image_upload(call: Call, model) -> dict[str, np.ndarray]:
    """An uploaded PNG/JPEG (the raw body, or the file of a multipart body) -> the model's single input,
    one row, decoded and preprocessed off the event loop. The model's preprocessing gives the row its
    input's shape, dtype and range by construction (and a front-end process leaves it to the engine),
    so :func:`check_batch` passes it through (``call.preprocessed``)."""
    multipart = content_type(call.request) == "multipart/form-data"
    data = await multipart_file(call.request, call.body) if multipart else call.body
    name = model.inputs[0].name
    call.preprocessed = (name,)
    return {name: (await run_image_work(image_row, model, data, call.settings))[None]}

"""``python -m service`` / ``tpserve``: serve the model repository.

By default an engine process (TensorFlow, batchers) and ``TPSERVE_WORKERS`` HTTP front-end processes
(:mod:`service.supervisor`); ``TPSERVE_WORKERS=0`` serves everything from this one process with
uvicorn (embedded mode, the same app and code paths; what tests and notebooks use in-process).

SIGTERM drains gracefully (what Kubernetes sends before killing a pod), in both modes:

1. readiness (``/readyz``, ``/v2/health/ready``) answers 503 at once, so load balancers stop routing;
2. for ``drain_grace_s`` new inference requests are still accepted (routing updates take time);
3. then new inference requests get 503, queued and running batches finish;
4. uvicorn closes and the process exits 0 — all within ``shutdown_timeout_s`` (+ the grace window,
   + at most 3 s for uvicorn to finish writing responses). Work still running at that deadline is
   abandoned (logged, ``tpserve_abandoned_batches_total``); it cannot hold up the exit.

A second SIGTERM or a SIGINT (Ctrl-C) stops at once, as uvicorn normally does.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Literal, get_args, get_origin

import uvicorn

__all__ = ["main", "build_parser", "settings_from_argv", "flag_name", "DrainingServer", "serve_embedded"]

logger = logging.getLogger("tpserve")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM drains the app instead of closing the socket at once."""

    def __init__(self, config, app):
        super().__init__(config)
        self._app = app
        self._draining = False

    def handle_exit(self, sig, frame):
        if sig != signal.SIGTERM or self._draining:
            return super().handle_exit(sig, frame)
        self._draining = True
        # uvicorn installs this with signal.signal: we are between two bytecodes of the loop's
        # thread, so hand the work to the loop rather than touching it directly. Not recording the
        # signal in _captured_signals means uvicorn will not re-raise it after shutdown: exit code 0.
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self):
        await self._app.state.manager.drain()
        self.should_exit = True


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _leaf_fields(model, path: tuple[str, ...] = ()):
    """(field path, FieldInfo) of every settable leaf field of a pydantic model, nested models expanded."""
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaf_fields(ann, (*path, name))
        else:
            yield (*path, name), field


def flag_name(path: tuple[str, ...]) -> str:
    """``("batching", "max_batch_size")`` -> ``--batching.max-batch-size`` (nested fields joined with '.')."""
    return "--" + ".".join(p.replace("_", "-") for p in path)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per field of :class:`service.settings.Settings`, generated from the
    fields themselves (help = the field's description, its default and its environment variable), so
    ``--help`` lists every setting and cannot drift from the code."""
    from .settings import Settings

    prefix = Settings.model_config["env_prefix"]
    delim = Settings.model_config["env_nested_delimiter"]
    parser = argparse.ArgumentParser(
        prog="tpserve", description="Serve the models of a model repository over HTTP. Every option below is "
        "also a TPSERVE_* environment variable (named after each option) and a key of the YAML/JSON file named by "
        "--config-file / TPSERVE_CONFIG_FILE; flags win over the environment, which wins over the file. "
        "SIGTERM drains gracefully (see the module docstring of service/__main__.py).")
    for path, field in _leaf_fields(Settings):
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(default) or "none"
        env = prefix + delim.join(path).upper()
        text = f"{field.description or ''} (default: {default}; env {env})".replace("%", "%%")
        kwargs = {"dest": "__".join(path), "default": argparse.SUPPRESS, "help": text}
        ann = field.annotation
        if ann is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(ann) is Literal:
            kwargs["choices"] = list(get_args(ann))
        else:
            # Strings: pydantic parses and validates them exactly as it does the environment's values.
            kwargs["metavar"] = ("A,B" if get_origin(ann) is list else "PATH" if "Path" in repr(ann)
                                 else _METAVARS.get(ann, "VALUE"))
        parser.add_argument(flag_name(path), **kwargs)
    return parser


def settings_from_argv(argv=None):
    """Settings from the command line (flags), the environment and the config file, in that priority."""
    from .settings import Settings

    args = vars(build_parser().parse_args(argv))
    overrides: dict = {}
    for dest, value in args.items():
        *parents, leaf = dest.split("__")
        node = overrides
        for p in parents:
            node = node.setdefault(p, {})
        # "null" means None, as in the environment (TPSERVE_DEFAULT_TIMEOUT_MS=null).
        node[leaf] = None if value == "null" else value
    return Settings(**overrides)


def main(argv=None) -> int:
    from pydantic import ValidationError

    # Quiet TensorFlow's C++ start-up chatter unless the operator asked for it (this is the server
    # process's entry point, not a library import).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        settings = settings_from_argv(argv)
    except (ValidationError, ValueError) as e:
        print(f"tpserve: invalid settings:\n{e}", file=sys.stderr)
        return 2

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers != 0:
        from .supervisor import serve

        return serve(settings)
    return serve_embedded(settings)


def serve_embedded(settings) -> int:
    """Everything in this process (TPSERVE_WORKERS=0): uvicorn, the app, the batchers and TensorFlow."""
    from .app import create_app
    from .httpserver import uvicorn_limits

    app = create_app(settings)
    # The drain above waits for queued and running batches; uvicorn then only has responses left to
    # write, so its own graceful window is short and shutdown stays within grace + timeout + 3 s.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=3, **uvicorn_limits(settings))
    server = DrainingServer(config, app)
    from .process import settle_heap

    settle_heap()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

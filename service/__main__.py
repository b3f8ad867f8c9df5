"""``python -m service`` / ``tpserve``: serve the model repository with uvicorn."""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tpserve", description="Serve the models of a model repository over HTTP. Every option can also be "
        "set as a TPSERVE_* environment variable or in a YAML/JSON file (TPSERVE_CONFIG_FILE).")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model-repository", help="model repository directory (default ./model_repository)")
    parser.add_argument("--config-file", help="YAML or JSON settings file")
    parser.add_argument("--device", help="'auto', 'cpu' or 'gpu:0,1'")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    import uvicorn
    from pydantic import ValidationError

    from .app import create_app
    from .settings import Settings

    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except (ValidationError, ValueError) as e:
        print(f"tpserve: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the real service app with fake models in its own process (so tests can measure its RSS and fds).

    python -m tests.reliability.fake_server --port 8123 --spec '{"models": [...], "settings": {...}}'
"""
from __future__ import annotations

import argparse
import json
import logging

import uvicorn

from service import Settings, create_app

from .models import Repository, build


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spec", required=True, help="JSON: {'models': [...], 'settings': {...}}")
    a = p.parse_args(argv)
    spec = json.loads(a.spec)
    logging.basicConfig(level="WARNING")
    app = create_app(Settings(**spec.get("settings", {})), repository=Repository(build(spec["models"])))
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False,
                **spec.get("uvicorn", {}))


if __name__ == "__main__":
    main()

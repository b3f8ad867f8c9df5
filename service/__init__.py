"""tpserve's inference service: ``create_app(settings)`` and ``python -m service``."""
from .app import create_app
from .settings import Settings

__all__ = ["create_app", "Settings"]

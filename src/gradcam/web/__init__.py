"""The web app and HTTP API (``gradcam serve``; needs the ``web`` extra: FastAPI and uvicorn)."""

from .app import create_app

__all__ = ["create_app"]

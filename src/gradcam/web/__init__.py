"""The web app and HTTP API (``gradcam serve``; needs the ``web`` extra: FastAPI and uvicorn)."""

from gradcam.web.routes import create_app

__all__ = ["create_app"]

"""The web app and HTTP API (``gradcam serve``; needs the ``web`` extra: FastAPI and uvicorn)."""

from gradcam.web.routes import create_app
from gradcam.web.service import KEEP_ALIVE

__all__ = ["create_app", "KEEP_ALIVE"]

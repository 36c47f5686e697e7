"""FastAPI app: a page to drop a photo on, and an HTTP API over the same pipeline.

Models are loaded once and cached; requests on one model run one at a time (its hooks are the
request's alone) while the server stays responsive. Nothing from a request is written to disk by us
or used as a path.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from matplotlib import colormaps
from PIL import Image

from .. import __version__
from ..device import choose_device
from ..errors import GradCAMError, ImageError
from ..io import load_image
from ..layers import auto_layer, candidate_layers, resolve_layers
from ..methods import describe_methods, list_methods, method_options
from ..models import BUNDLED, ModelBundle, load_model
from ..pipeline import Explainer
from ..targets import class_spec

STATIC = Path(__file__).with_name("static")
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "gray")
MAX_UPLOAD = 20 * 1024 * 1024  # bytes
MAX_PIXELS = 40_000_000


class Service:
    """The models a server offers, loaded on first use and kept; one lock per model."""

    def __init__(self, models: list[str], weights: str | None = None, device: str | None = None):
        self.names = list(dict.fromkeys(models)) or [BUNDLED]
        self.weights = weights
        self.device = choose_device(device)
        self._bundles: dict[str, ModelBundle] = {}
        self._explainers: dict[tuple, Explainer] = {}
        self._locks = {name: threading.Lock() for name in self.names}
        self._loading = threading.Lock()

    def bundle(self, name: str) -> ModelBundle:
        if name not in self.names:
            raise HTTPException(422, f"unknown model {name!r}; this server offers: {', '.join(self.names)}")
        with self._loading:
            if name not in self._bundles:
                weights = self.weights if name == self.names[0] else None
                self._bundles[name] = load_model(name, weights, device=self.device)
            return self._bundles[name]

    def lock(self, name: str) -> threading.Lock:
        return self._locks[name]

    def explainer(self, name: str, method: str, layer: str | None) -> Explainer:
        """One per (model, method, layer); use it under the model's lock."""
        key = (name, method, layer)
        if key not in self._explainers:
            if layer is not None:
                resolve_layers(self.bundle(name).module, layer.split(",") if "," in layer else layer)
            options = {"max_channels": 256} if "max_channels" in method_options(method) else {}
            self._explainers[key] = Explainer(self.bundle(name), method=method, layer=layer, device=self.device,
                                              **options)
        return self._explainers[key]

    def layers(self, name: str) -> tuple[str, list[dict]]:
        bundle = self.bundle(name)
        x = bundle.probe()
        with self.lock(name):
            automatic = auto_layer(bundle.module, x)
            found = [{"name": i.name, "shape": list(i.shape[1:])} for i in candidate_layers(bundle.module, x)
                     if i.usable]
        return automatic, found


def create_app(models: list[str] | None = None, weights: str | None = None, device: str | None = None,
               max_upload: int = MAX_UPLOAD) -> FastAPI:
    """The app; ``models`` are the names it offers (the first is the default)."""
    service = Service(models or [BUNDLED], weights, device)
    app = FastAPI(title="gradcam", version=__version__,
                  description="Grad-CAM and the CAM family over HTTP: which part of the image made the model decide.")
    app.state.service = service

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and not (length and length.isascii() and length.isdigit()):
            return JSONResponse({"detail": "a Content-Length header is required (no chunked uploads)"},
                                status_code=411)
        if request.method == "POST" and int(length) > max_upload + 64 * 1024:
            return JSONResponse({"detail": f"upload too large: {int(length)} bytes; the limit is {max_upload}"},
                                status_code=413)
        return await call_next(request)

    @app.exception_handler(GradCAMError)
    async def gradcam_error(request: Request, exc: GradCAMError):
        status = 415 if isinstance(exc, ImageError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/api/models")
    def api_models() -> dict:
        return {"models": service.names, "default": service.names[0]}

    @app.get("/api/methods")
    def api_methods() -> dict:
        return {"methods": [{"name": n, "description": d} for n, d in describe_methods().items()],
                "default": "gradcam"}

    @app.get("/api/layers")
    def api_layers(model: str | None = None) -> dict:
        name = model or service.names[0]
        automatic, layers = service.layers(name)
        return {"model": name, "automatic": automatic, "layers": layers}

    @app.get("/api/labels")
    def api_labels(model: str | None = None) -> dict:
        bundle = service.bundle(model or service.names[0])
        return {"model": bundle.name, "labels": bundle.labels or []}

    @app.get("/api/colormaps")
    def api_colormaps() -> dict:
        luts = {name: (colormaps[name](np.linspace(0, 1, 256), bytes=True)[:, :3]).tolist() for name in COLORMAPS}
        return {"colormaps": list(COLORMAPS), "luts": luts}

    @app.post("/api/explain")
    def api_explain(
        image: UploadFile = File(..., description="the photo (JPEG, PNG, WebP, BMP, TIFF, GIF)"),
        model: str | None = Form(None),
        method: str = Form("gradcam"),
        layer: str | None = Form(None),
        target: str | None = Form(None, description="class index or name; default: the prediction"),
        colormap: str = Form("jet"),
        alpha: float = Form(0.5),
        normalize: str = Form("minmax"),
    ) -> dict:
        name = model or service.names[0]
        service.bundle(name)  # 422 for a model this server does not offer (loads it the first time)
        start = time.perf_counter()
        if method not in list_methods():
            raise HTTPException(422, f"unknown method {method!r}; choose one of: {', '.join(list_methods())}")
        if colormap not in COLORMAPS:
            raise HTTPException(422, f"unknown colormap {colormap!r}; choose one of: {', '.join(COLORMAPS)}")
        if not 0.0 <= alpha <= 1.0:
            raise HTTPException(422, f"alpha must be in [0, 1], got {alpha}")
        data = image.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, f"upload too large; the limit is {max_upload} bytes")
        picture = load_image(data, max_pixels=MAX_PIXELS)
        decoded = time.perf_counter()
        spec: Any = class_spec(target)
        if normalize not in ("minmax", "max", "none"):
            raise HTTPException(422, f"unknown normalize {normalize!r}; choose one of: minmax, max, none")
        with service.lock(name):
            explainer = service.explainer(name, method, layer or None)
            explainer.normalize = normalize
            out = explainer.run(explainer.bundle.preprocess.batch([picture]), spec)
            result = explainer.explanations(out, [picture], ["upload"])[0]
        result.colormap, result.alpha = colormap, alpha
        explained = time.perf_counter()
        pictures = {"original": _data_url(picture), "map": _data_url(result.grayscale()),
                    "heatmap": _data_url(result.colored()), "overlay": _data_url(result.overlay())}
        done = time.perf_counter()
        return {
            "model": explainer.bundle.name, "method": method, "layer": result.layer,
            "target": {"index": result.class_index, "label": result.label, "probability": result.probability},
            "top5": [{"index": i, "label": label, "probability": p} for i, label, p in result.extra["top5"]],
            "image": {"width": picture.width, "height": picture.height},
            "timings_ms": {"decode": round((decoded - start) * 1000, 1),
                           "explain": round((explained - decoded) * 1000, 1),
                           "render": round((done - explained) * 1000, 1),
                           "total": round((done - start) * 1000, 1)},
            "pictures": pictures,
        }

    return app


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

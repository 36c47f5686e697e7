"""FastAPI app: a page to drop a photo on, and an HTTP API over the same pipeline.

Every route is ``async`` and only validates, reads and awaits: the model work runs in the
:class:`~.service.Service` (one worker thread per model, a bounded queue), so the read-only routes
never wait for a model. A full queue is 503 with Retry-After.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from gradcam import __version__
from gradcam.apps.tasks import TASKS, parse_box
from gradcam.engine.layers import parse_layers
from gradcam.engine.methods import describe_methods, list_methods
from gradcam.engine.precision import PRECISIONS
from gradcam.engine.targets import class_spec
from gradcam.errors import GradCAMError, ImageError
from gradcam.models.sources import BUNDLED
from gradcam.web.comparison import MAX_COMPARE, CompareRequest
from gradcam.web.service import (
    MAX_QUEUE,
    RENDER,
    RESULT_SECONDS,
    RESULTS,
    ExplainRequest,
    QueueFull,
    Service,
    TaskRequest,
)

STATIC = Path(__file__).with_name("static")
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "gray")
NORMALIZE = ("minmax", "max", "none")
MAX_UPLOAD = 20 * 1024 * 1024  # bytes
ACCESS = logging.getLogger("gradcam.web")  # one line per request: client, method, path, status, ms


def create_app(models: list[str] | None = None, weights: str | None = None, device: str | None = None,
               max_upload: int = MAX_UPLOAD, max_queue: int = MAX_QUEUE, access_log: bool = True) -> FastAPI:
    """The app; ``models`` are the names it offers (the first is the default); at most ``max_queue``
    explain requests wait or run at once, the next ones get 503. ``access_log``: one line per request
    (client, method, path, status, milliseconds) on the ``gradcam.web`` logger at INFO, written to
    stderr unless logging is configured already."""
    if access_log:
        _log_to_stderr()
    service = Service(models or [BUNDLED], weights, device, max_queue=max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="gradcam", version=__version__, lifespan=lifespan,
                  description="Grad-CAM and the CAM family over HTTP: which part of the image made the model decide.")
    app.state.service, app.state.max_upload = service, max_upload
    app.state.luts = _colormap_luts(COLORMAPS)

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

    if access_log:
        app.add_middleware(AccessLog)  # added last, so the outermost: it sees 411, 413 and 500 too
    app.add_exception_handler(GradCAMError, _gradcam_error)
    app.add_exception_handler(QueueFull, _queue_full)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    return app


class AccessLog:
    """ASGI middleware: one line per HTTP request on the ``gradcam.web`` logger (client, method, path,
    status, milliseconds to the end of the response); a plain ASGI wrapper, cheaper than Starlette's
    ``BaseHTTPMiddleware``, so the read-only routes stay fast under load."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            ACCESS.info('%s "%s %s" %d %.1f ms', f"{client[0]}:{client[1]}" if client else "-", scope["method"],
                        scope["path"], status[0], (time.perf_counter() - start) * 1000)


def _log_to_stderr() -> None:
    """The access log on stderr when no handler would print it (``gradcam serve`` sets uvicorn's own
    loggers to warnings only); left alone where logging is configured (an app, pytest's caplog)."""
    if ACCESS.level == logging.NOTSET:
        ACCESS.setLevel(logging.INFO)
    if not ACCESS.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s gradcam.web %(message)s"))
        ACCESS.addHandler(handler)


async def _gradcam_error(request: Request, exc: GradCAMError):
    status = 415 if isinstance(exc, ImageError) else 422
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _queue_full(request: Request, exc: QueueFull):
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


def _service(request: Request) -> Service:
    return request.app.state.service


router = APIRouter()
ServiceDep = Annotated[Service, Depends(_service)]


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/healthz")
async def healthz(service: ServiceDep) -> dict:
    return {"status": "ok", "version": __version__, "queue": {"jobs": service.queued, "limit": service.max_queue}}


@router.get("/api/models")
async def api_models(service: ServiceDep) -> dict:
    return {"models": service.names, "default": service.names[0]}


@router.get("/api/methods")
async def api_methods() -> dict:
    return {"methods": [{"name": n, "description": d} for n, d in describe_methods().items()], "default": "gradcam",
            "compare_max": MAX_COMPARE}


@router.get("/api/layers")
async def api_layers(service: ServiceDep, model: str | None = None) -> dict:
    loaded = await service.loaded(model)
    return {"model": loaded.bundle.name, "automatic": loaded.automatic, "layers": loaded.layers,
            "stages": loaded.stages}


@router.get("/api/labels")
async def api_labels(service: ServiceDep, model: str | None = None) -> dict:
    bundle = (await service.loaded(model)).bundle
    return {"model": bundle.name, "labels": bundle.labels or []}


@router.get("/api/colormaps")
async def api_colormaps(request: Request) -> dict:
    return {"colormaps": list(COLORMAPS), "luts": request.app.state.luts}


@router.post("/api/explain")
async def api_explain(
    request: Request,
    service: ServiceDep,
    image: UploadFile = File(..., description="the photo (JPEG, PNG, WebP, BMP, TIFF, GIF)"),
    model: str | None = Form(None),
    method: str = Form("gradcam"),
    layer: str | None = Form(None, description="a layer name, or several separated by commas"),
    target: str | None = Form(None, description="class index or name; default: the prediction"),
    colormap: str = Form("jet"),
    alpha: float = Form(0.5),
    normalize: str = Form("minmax"),
    precision: str = Form("fp32", description="fp32, bf16, fp16 or auto (bf16 where the device runs it natively)"),
) -> dict:
    """Predictions, top-5, the pictures the page shows (long side at most 1024 px) and the URLs of
    the full-resolution ones."""
    name = service.check(model)
    if method not in list_methods():
        raise HTTPException(422, f"unknown method {method!r}; choose one of: {', '.join(list_methods())}")
    _check_look(colormap, alpha)
    _check_map(normalize, precision)
    layers, spec = parse_layers(layer), class_spec(target)
    data = await _upload(request, image)
    return await service.explain(ExplainRequest(name, data, method=method, layer=layers, target=spec,
                                                normalize=normalize, colormap=colormap, alpha=alpha,
                                                precision=precision, filename=image.filename or ""))


@router.post("/api/compare")
async def api_compare(
    request: Request,
    service: ServiceDep,
    image: UploadFile = File(..., description="the photo (JPEG, PNG, WebP, BMP, TIFF, GIF)"),
    methods: list[str] = Form(..., description=f"the methods, separated by commas (at most {MAX_COMPARE})"),
    model: str | None = Form(None),
    layer: str | None = Form(None, description="a layer name, or several separated by commas"),
    target: str | None = Form(None, description="class index or name; default: the prediction"),
    normalize: str = Form("minmax"),
    precision: str = Form("fp32", description="fp32, bf16, fp16 or auto"),
) -> dict:
    """Several methods on the same photo, for the same class: the prediction and top 5 once, then one
    entry per method in the order asked: ``status: "ok"`` with its grayscale ``map`` (a guided method's
    image where ``map_kind`` is "image") at the display size, or ``status: "skipped"`` with the
    ``reason`` it does not apply (``"failed"``: the reason it failed). Each map is the one ``/api/explain``
    gives for that method."""
    name = service.check(model)
    asked = list(dict.fromkeys(m.strip() for field in methods for m in field.split(",") if m.strip()))
    known = {m.casefold(): m for m in list_methods()}
    unknown = [m for m in asked if m.casefold() not in known]
    if unknown:
        raise HTTPException(422, f"unknown method {unknown[0]!r}; choose from: {', '.join(list_methods())}")
    asked = list(dict.fromkeys(known[m.casefold()] for m in asked))
    if not asked or len(asked) > MAX_COMPARE:
        raise HTTPException(422, f"compare 1 to {MAX_COMPARE} methods at once, got {len(asked)}")
    _check_map(normalize, precision)
    layers, spec = parse_layers(layer), class_spec(target)
    data = await _upload(request, image)
    return await service.compare(CompareRequest(name, data, asked, layer=layers, target=spec, normalize=normalize,
                                                precision=precision, filename=image.filename or ""))


@router.get("/api/tasks")
async def api_tasks() -> dict:
    return {"tasks": ["classification", *TASKS], "default": "classification"}


@router.post("/api/explain-task")
async def api_explain_task(
    request: Request,
    service: ServiceDep,
    image: UploadFile = File(..., description="the photo"),
    task: str = Form(..., description=", ".join(TASKS)),
    model: str | None = Form(None),
    method: str = Form("gradcam"),
    layer: str | None = Form(None, description="a layer name, or several separated by commas"),
    classes: str | None = Form(None, alias="class", description="the class, or labels separated by commas"),
    box: str | None = Form(None, description="detection: x0,y0,x1,y1 in the photo's pixels"),
    min_score: float | None = Form(None, description="detection: the objects' least score; multilabel: p"),
    reference: UploadFile | None = File(None, description="embedding: the image to match"),
    negative: bool = Form(False, description="regression: what drives the output down"),
    colormap: str = Form("jet"),
    alpha: float = Form(0.5),
) -> dict:
    """Segmentation, detection (one map per object; boxes in display pixels), embedding, binary,
    multi-label or regression: captions, one overlay per map and the task's pictures, at most 1024 px."""
    name = service.check(model)
    if task not in TASKS:
        raise HTTPException(422, f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if method not in list_methods():
        raise HTTPException(422, f"unknown method {method!r}; choose one of: {', '.join(list_methods())}")
    _check_look(colormap, alpha)
    parsed_box = parse_box(box) if box else None
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise HTTPException(422, f"min_score must be in [0, 1], got {min_score}")
    max_upload = request.app.state.max_upload
    data = await image.read(max_upload + 1)
    other = await reference.read(max_upload + 1) if reference is not None else None
    if len(data) > max_upload or (other is not None and len(other) > max_upload):
        raise HTTPException(413, f"upload too large; the limit is {max_upload} bytes")
    picked = None if not classes else [class_spec(c) for c in classes.split(",") if c.strip()]
    return await service.explain_task(TaskRequest(name, data, task, method=method, layer=parse_layers(layer),
                                                  classes=picked, box=parsed_box, min_score=min_score,
                                                  reference=other, negative=negative, colormap=colormap,
                                                  alpha=alpha, filename=image.filename or ""))


@router.get("/api/results/{result_id}/{kind}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "the picture at the upload's size"}})
async def api_result_picture(service: ServiceDep, result_id: str, kind: str, colormap: str | None = None,
                             alpha: float | None = None) -> Response:
    """A recent explanation's grayscale, heatmap or overlay at the photo's full resolution, with the
    request's colormap and opacity unless given. The last results are kept for a few minutes."""
    if kind not in RENDER:
        raise HTTPException(404, f"unknown picture {kind!r}; choose one of: {', '.join(RENDER)}")
    _check_look(colormap or "jet", 0.5 if alpha is None else alpha)
    picture = await service.picture(result_id, kind, colormap, alpha)
    if picture is None:
        raise HTTPException(404, f"no such result: the last {RESULTS} are kept for {RESULT_SECONDS // 60} "
                                 "minutes; explain the photo again")
    return Response(picture, media_type="image/png")


def _check_map(normalize: str, precision: str) -> None:
    if normalize not in NORMALIZE:
        raise HTTPException(422, f"unknown normalize {normalize!r}; choose one of: {', '.join(NORMALIZE)}")
    if precision not in PRECISIONS:
        raise HTTPException(422, f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


async def _upload(request: Request, image: UploadFile) -> bytes:
    """The uploaded file's bytes; 413 beyond the app's ``max_upload``."""
    max_upload = request.app.state.max_upload
    data = await image.read(max_upload + 1)
    if len(data) > max_upload:
        raise HTTPException(413, f"upload too large; the limit is {max_upload} bytes")
    return data


def _check_look(colormap: str, alpha: float) -> None:
    if colormap not in COLORMAPS:
        raise HTTPException(422, f"unknown colormap {colormap!r}; choose one of: {', '.join(COLORMAPS)}")
    if not 0.0 <= alpha <= 1.0:
        raise HTTPException(422, f"alpha must be in [0, 1], got {alpha}")


def _colormap_luts(names: tuple[str, ...]) -> dict[str, list]:
    """Each colormap as 256 RGB triples, for the page to recolour maps without asking the server."""
    from matplotlib import colormaps

    return {name: (colormaps[name](np.linspace(0, 1, 256), bytes=True)[:, :3]).tolist() for name in names}

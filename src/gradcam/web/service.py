"""The work behind the web app: models loaded once, each model's jobs on its own worker thread,
a bounded queue in front of them, and small bounded caches of per-batch steps (the folder job's own step,
its pictures kept in memory) and of recent results.

The HTTP routes only validate and await: no request holds one of the server's shared threads while
it waits for a model, so the read-only routes answer however many explain requests are queued.
Nothing from a request is written to disk by us or used as a path: uploads, maps and pictures stay
in memory (Starlette keeps an upload over 1 MB in an anonymous temporary file while it parses it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from gradcam.apps.device import choose_device
from gradcam.apps.explainer import Explanation
from gradcam.apps.pipeline.step import ExplainStep, Failed
from gradcam.apps.tasks import explain_task
from gradcam.engine.layers import auto_layer, candidate_layers, resolve_layers, stage_layers
from gradcam.engine.methods import method_info, method_options
from gradcam.errors import ImageError, ModelError, OptionError
from gradcam.io.images import load_image
from gradcam.models.bundle import ModelBundle
from gradcam.models.sources import BUNDLED, load_model
from gradcam.render.files import MemorySink, png_bytes, png_data_url
from gradcam.render.pictures import fit
from gradcam.web.comparison import CompareRequest, compare_cells

LOG = logging.getLogger("gradcam.web")
MAX_PIXELS = 40_000_000
MAX_QUEUE = 32  # explain jobs admitted at once (waiting or running), over all models
MAX_RETRY_AFTER = 60  # the longest Retry-After a busy server asks for, in seconds
# An idle keep-alive connection stays open longer than the longest Retry-After: a client that honours it
# comes back on the same connection, not on one the server is closing (uvicorn's default closes after 5 s,
# and a request sent as it closes fails with a read error).
KEEP_ALIVE = MAX_RETRY_AFTER + 5
DISPLAY = 1024  # the long side of the pictures sent to the page, in pixels
MAX_STEPS = 8
RESULTS, RESULT_BYTES, RESULT_SECONDS = 16, 64 * 1024 * 1024, 600  # kept for full-resolution downloads
RENDER: dict[str, Callable[[Explanation], Image.Image]] = {
    "grayscale": Explanation.grayscale, "heatmap": Explanation.colored, "overlay": Explanation.overlay}


class QueueFull(Exception):
    """Too many explain jobs are waiting; the client should come back after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class LRU:
    """A thread-safe mapping of the most recently used entries: at most ``size`` of them, at most
    ``budget`` in total ``weight`` (the newest always stays), none older than ``ttl`` seconds."""

    def __init__(self, size: int, *, budget: float = math.inf, ttl: float = math.inf,
                 weight: Callable[[Any], int] = lambda value: 0):
        self.size, self.budget, self.ttl, self.weight = size, budget, ttl, weight
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            self._expire()
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            self._expire()
            while len(self._items) > self.size or (
                    len(self._items) > 1 and sum(self.weight(v) for _, v in self._items.values()) > self.budget):
                self._items.popitem(last=False)

    def keys(self) -> list:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [key for key, (added, _) in self._items.items() if now - added > self.ttl]:
            del self._items[key]


@dataclass
class Loaded:
    """A model ready to explain, with its layer listing (probed once, when it was loaded)."""

    bundle: ModelBundle
    automatic: str
    layers: list[dict]
    stages: list[str]  # one layer per resolution stage, shallow to deep (the page's layer slider)


@dataclass
class ExplainRequest:
    """One explain request, validated; ``layer`` as :func:`gradcam.layers.parse_layers` gives it."""

    model: str
    data: bytes
    method: str = "gradcam"
    layer: str | list[str] | None = None
    target: int | str | None = None
    normalize: str = "minmax"
    colormap: str = "jet"
    alpha: float = 0.5
    precision: str = "fp32"
    filename: str = ""  # the upload's own name, for its errors

    @property
    def key(self) -> tuple:
        """The per-batch step that serves it: (model, method, layer or tuple of layers, precision)."""
        return (self.model, self.method, tuple(self.layer) if isinstance(self.layer, list) else self.layer,
                self.precision)


@dataclass
class TaskRequest:
    """One request to explain a photo for a task other than classification (see
    :func:`gradcam.apps.tasks.explain_task`); ``box`` in the photo's pixels, ``reference`` an image's bytes."""

    model: str
    data: bytes
    task: str
    method: str = "gradcam"
    layer: str | list[str] | None = None
    classes: list | None = None
    box: list[float] | None = None
    min_score: float | None = None
    reference: bytes | None = None
    negative: bool = False
    colormap: str = "jet"
    alpha: float = 0.5
    filename: str = ""


@dataclass
class Result:
    """What a full-resolution picture of an explained upload is drawn from, again."""

    request: ExplainRequest
    out: Any  # the CAMOutput: raw maps at the layers' resolution, classes, logits


class Service:
    """The models a server offers, loaded on first use and kept. Each model runs its jobs (loading,
    explaining, full-resolution pictures) one at a time on its own worker thread, under its lock."""

    def __init__(self, models: list[str], weights: str | None = None, device: str | None = None,
                 max_queue: int = MAX_QUEUE):
        if max_queue < 1:
            raise OptionError(f"max_queue must be at least 1, got {max_queue}")
        self.names = list(dict.fromkeys(models)) or [BUNDLED]
        self.weights = weights
        self.device = choose_device(device)
        self.max_queue = max_queue
        self.steps = LRU(MAX_STEPS)
        self.results = LRU(RESULTS, budget=RESULT_BYTES, ttl=RESULT_SECONDS,
                           weight=lambda result: len(result.request.data))
        self._locks = {name: threading.Lock() for name in self.names}
        self._workers = {name: ThreadPoolExecutor(1, thread_name_prefix=f"gradcam-{name}") for name in self.names}
        self._loads: dict[str, Future] = {}
        self._loading = threading.Lock()
        self._jobs, self._counting = 0, threading.Lock()
        self._seconds = 0.1  # a running mean of a job's duration, for Retry-After

    # ------------------------------------------------------------------ models

    def check(self, name: str | None) -> str:
        """The model's name (the default for None); a ModelError for one this server does not offer."""
        name = name or self.names[0]
        if name not in self.names:
            raise ModelError(f"unknown model {name!r}; this server offers: {', '.join(self.names)}")
        return name

    def lock(self, name: str) -> threading.Lock:
        return self._locks[name]

    async def loaded(self, name: str) -> Loaded:
        """The model, loaded by its worker the first time (other callers wait for the same load)."""
        return await asyncio.shield(asyncio.wrap_future(self._load_future(self.check(name))))

    def _load_future(self, name: str) -> Future:
        with self._loading:
            future = self._loads.get(name)
            if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
                future = self._loads[name] = self._workers[name].submit(self._load, name)
            return future

    def _load(self, name: str) -> Loaded:
        bundle = load_model(name, self.weights if name == self.names[0] else None, device=self.device)
        x = bundle.probe()  # no lock needed: no one else has this model yet
        layers = [{"name": i.name, "shape": list(i.shape[1:])} for i in candidate_layers(bundle.module, x) if i.usable]
        try:
            stages = stage_layers(bundle.module, x)
        except Exception:  # stages that cannot be told apart: no depth slider, the rest works
            stages = []
        return Loaded(bundle, auto_layer(bundle.module, x), layers, stages)

    def _step(self, bundle: ModelBundle, request: ExplainRequest) -> ExplainStep:
        """The cached per-batch step for the request, else a new one (cached by the caller once it worked),
        with the request's map and picture options. Its pictures stay in memory: the page is sent the
        grayscale map (which it colours itself), or a guided method's image."""
        step = self.steps.get(request.key)
        if step is None:
            if request.layer is not None:
                resolve_layers(bundle.module, request.layer)  # a clear error before anything is built
            options = {"max_channels": 256} if "max_channels" in method_options(request.method) else {}
            guided = method_info(request.method)["output_kind"] == "image"
            step = ExplainStep(MemorySink(), model=bundle, method=request.method, layer=request.layer,
                               device=self.device, precision=request.precision,
                               save=("heatmap",) if guided else ("grayscale",), **options)
        explainer = step.explainers[0]
        explainer.normalize, explainer.colormap, explainer.alpha = request.normalize, request.colormap, request.alpha
        return step

    # ------------------------------------------------------------------ the queue

    @property
    def queued(self) -> int:
        """Jobs admitted and not finished (waiting or running)."""
        return self._jobs

    async def _run(self, name: str, job: Callable, *args: Any) -> Any:
        """``job(load, submitted, *args)`` on the model's worker; QueueFull, without waiting, when
        ``max_queue`` jobs are already admitted. Awaiting holds no thread."""
        with self._counting:
            if self._jobs >= self.max_queue:
                wait = min(MAX_RETRY_AFTER, max(1, math.ceil(self._jobs * self._seconds)))
                raise QueueFull(f"the server is busy: {self._jobs} requests are queued (the limit is "
                                f"{self.max_queue}); try again in {wait} s", wait)
            self._jobs += 1
        try:
            load = self._load_future(name)
            future = self._workers[name].submit(self._timed, job, load, time.perf_counter(), *args)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)  # the slot is freed when the job ends, even if no one waits
        return await asyncio.wrap_future(future)

    def _timed(self, job: Callable, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return job(*args)
        finally:
            self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

    def _finished(self, future: Future | None) -> None:
        with self._counting:
            self._jobs -= 1

    def close(self) -> None:
        """Stop the workers; queued jobs are cancelled."""
        for worker in self._workers.values():
            worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ jobs

    async def explain(self, request: ExplainRequest) -> dict:
        """Predictions, the pictures the page shows (long side at most DISPLAY) and where to download
        the full-resolution ones."""
        return await self._run(request.model, self._explain, request)

    async def picture(self, result_id: str, kind: str, colormap: str | None = None,
                      alpha: float | None = None) -> bytes | None:
        """A recent result's ``kind`` picture (grayscale, heatmap, overlay) at the upload's full
        resolution, as PNG; None when the result is unknown or no longer kept."""
        result = self.results.get(result_id)
        if result is None:
            return None
        return await self._run(result.request.model, self._picture, result, kind, colormap, alpha)

    def _explain(self, load: Future, submitted: float, request: ExplainRequest) -> dict:
        start = time.perf_counter()
        bundle = load.result().bundle
        picture = _upload(request.data, request.filename)
        decoded = time.perf_counter()
        shown, sink = fit(picture, DISPLAY), MemorySink()
        with self.lock(request.model):
            step = self._step(bundle, request)
            [found] = step.explain(["upload"], bundle.preprocess.batch([picture]), request.target)
            if isinstance(found[0], Failed):
                raise ModelError(found[0].message)
            self.steps.put(request.key, step)  # only a step that worked is kept
            [row] = step.write("upload", np.asarray(shown), found, sink).rows
        explained = time.perf_counter()
        kind = "image" if "heatmap" in row["files"] else "heatmap"  # guided methods give an image
        pictures = {"original": png_data_url(shown)}
        for file_kind, name in row["files"].items():  # the grayscale map: the page colours it itself
            pictures["map" if file_kind == "grayscale" else file_kind] = png_data_url(sink.items[name])
        result_id = secrets.token_urlsafe(16)
        self.results.put(result_id, Result(request, found[0][0]))
        done = time.perf_counter()
        return {
            "model": bundle.name, "method": request.method, "precision": request.precision,
            "layer": row["layer"], "map_kind": kind,
            "target": {"index": row["class_index"], "label": row["label"], "probability": row["probability"]},
            "top5": [{"index": i, "label": label, "probability": p} for i, label, p in row["top5"]],
            "image": {"width": picture.width, "height": picture.height},
            "display": {"width": shown.width, "height": shown.height},
            "timings_ms": {"queue": _ms(start - submitted), "decode": _ms(decoded - start),
                           "explain": _ms(explained - decoded), "render": _ms(done - explained),
                           "total": _ms(done - submitted)},
            "pictures": pictures,
            "downloads": {kind: f"/api/results/{result_id}/{kind}.png" for kind in RENDER},
        }

    async def compare(self, request: CompareRequest) -> dict:
        """Each method's map of one photo for one class, side by side: the prediction (class, top 5) of
        the first method that applies, the others explain that class; a method that does not apply
        ("skipped") or fails ("failed") is an entry with its reason, not an error of the request."""
        return await self._run(request.model, self._compare, request)

    def _compare(self, load: Future, submitted: float, request: CompareRequest) -> dict:
        start = time.perf_counter()
        bundle = load.result().bundle
        picture = _upload(request.data, request.filename)
        decoded = time.perf_counter()
        shown = fit(picture, DISPLAY)

        def step_for(method: str) -> tuple:
            single = ExplainRequest(request.model, request.data, method=method, layer=request.layer,
                                    target=request.target, normalize=request.normalize,
                                    precision=request.precision, filename=request.filename)
            return single.key, self._step(bundle, single)

        with self.lock(request.model):
            if request.layer is not None:
                resolve_layers(bundle.module, request.layer)  # a bad layer is the request's error (422)
            found = compare_cells(request, bundle.preprocess.batch([picture]).to(self.device), np.asarray(shown),
                                  step_for)
            for key, step in found.steps:  # only a step that worked is kept
                self.steps.put(key, step)
        explained = time.perf_counter()
        original = png_data_url(shown)
        done = time.perf_counter()
        render, prediction = found.render_seconds, found.prediction
        body = {
            "model": bundle.name, "precision": request.precision, "normalize": request.normalize,
            "methods": found.entries, "target": None, "top5": [],
            "image": {"width": picture.width, "height": picture.height},
            "display": {"width": shown.width, "height": shown.height},
            "pictures": {"original": original},
            "timings_ms": {"queue": _ms(start - submitted), "decode": _ms(decoded - start),
                           "explain": _ms(explained - decoded - render), "render": _ms(render + done - explained),
                           "total": _ms(done - submitted)},
        }
        if prediction is not None:
            body["target"] = {"index": prediction["class_index"], "label": prediction["label"],
                              "probability": prediction["probability"]}
            body["top5"] = [{"index": i, "label": label, "probability": p} for i, label, p in prediction["top5"]]
        return body

    async def explain_task(self, request: TaskRequest) -> dict:
        """One map per explained thing (object, label, class region) and the task's pictures, all at
        the display size; detection boxes in display pixels, for the page to pick an object by a click."""
        return await self._run(request.model, self._explain_task, request)

    def _explain_task(self, load: Future, submitted: float, request: TaskRequest) -> dict:
        start = time.perf_counter()
        bundle = load.result().bundle
        picture = _upload(request.data, request.filename)
        shown = fit(picture, DISPLAY)
        scale = shown.width / picture.width
        reference = None if request.reference is None else _upload(request.reference, "reference")
        box = None if request.box is None else [v * scale for v in request.box]
        with self.lock(request.model):
            result = explain_task(shown, model=bundle, task=request.task, method=request.method,
                                  layer=request.layer, classes=request.classes, box=box, min_score=request.min_score,
                                  reference=reference, negative=request.negative, device=self.device,
                                  colormap=request.colormap, alpha=request.alpha, name="upload")
        overlays = result.overlays()
        return {
            "model": bundle.name, "method": request.method, "task": request.task, "layer": result.layer,
            "captions": result.captions, "boxes": result.boxes,
            "image": {"width": picture.width, "height": picture.height},
            "display": {"width": shown.width, "height": shown.height},
            "pictures": {kind: png_data_url(p) for kind, p in result.pictures().items()},
            "overlays": [png_data_url(o) for o in overlays],
            "timings_ms": {"total": _ms(time.perf_counter() - submitted), "explain": _ms(time.perf_counter() - start)},
        }

    def _picture(self, load: Future, submitted: float, result: Result, kind: str, colormap: str | None,
                 alpha: float | None) -> bytes:
        request = result.request
        picture = load_image(request.data, max_pixels=MAX_PIXELS)
        with self.lock(request.model):
            explainer = self._step(load.result().bundle, request).explainers[0]
            full = explainer.explanations(result.out, [picture], ["upload"])[0]
        full.colormap = request.colormap if colormap is None else colormap
        full.alpha = request.alpha if alpha is None else alpha
        return png_bytes(RENDER[kind](full))


def _upload(data: bytes, filename: str) -> Image.Image:
    """The uploaded photo, decoded; its ImageError names the uploaded file (not ``<bytes>``)."""
    try:
        return load_image(data, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        message = str(exc)
        if filename and message.startswith("<bytes>"):
            raise ImageError(_printable(filename) + message[len("<bytes>"):]) from None
        raise


def _printable(name: str, limit: int = 120) -> str:
    """A client's file name as it may be echoed: no control characters, no folders, not too long."""
    name = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())
    return (name[:limit] + "…") if len(name) > limit else (name or "upload")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

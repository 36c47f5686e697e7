"""The web page's comparison: several methods' maps of one photo for one class, side by side.

Each method is served by its own cached per-batch step (the one /api/explain uses, so a cell is the map
that method gives alone). The methods that can share a pass (:mod:`gradcam.engine.methods.together`: the
gradient methods that combine activations and gradients, and those that read the activations alone)
run from one forward pass and one backward pass; the others run theirs. A method that does not apply
("skipped") or fails ("failed") is a cell with its reason, not an error of the request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from gradcam.apps.pipeline.step import ExplainStep, Failed, run_explainers
from gradcam.engine.methods.together import groups
from gradcam.errors import GradCAMError, TargetError
from gradcam.render.files import MemorySink, png_data_url

LOG = logging.getLogger("gradcam.web")
MAX_COMPARE = 8  # methods in one comparison (each is a pass of the model, some of them many)


@dataclass
class CompareRequest:
    """Several methods on one photo, for one class (the request's, else the prediction): ``methods``
    validated names, at most MAX_COMPARE."""

    model: str
    data: bytes
    methods: list[str]
    layer: str | list[str] | None = None
    target: int | str | None = None
    normalize: str = "minmax"
    precision: str = "fp32"
    filename: str = ""


@dataclass
class Cells:
    """What a comparison found: one entry per method, in the asked order, and the prediction (the first
    map's row) every map explains."""

    entries: list[dict]
    prediction: dict | None = None
    render_seconds: float = 0.0
    steps: list[tuple[Any, ExplainStep]] = field(default_factory=list)  # (request key, step) that worked


def compare_cells(request: CompareRequest, x: torch.Tensor, array: np.ndarray,
                  step_for: Callable[[str], tuple[Any, ExplainStep]]) -> Cells:
    """Every asked method's cell for the preprocessed photo ``x`` (on the model's device), drawn on
    ``array`` (the display-size photo); ``step_for(method)`` gives the method's (cache key, cached or new
    step)."""
    cells: dict[str, dict] = {}
    ready: list[tuple[str, Any, ExplainStep]] = []
    for method in request.methods:
        try:
            key, step = step_for(method)
            why = step.explainers[0].cam.unsuitable(x)
        except GradCAMError as exc:
            cells[method] = _skipped(str(exc))
            continue
        except Exception as exc:  # one method's bug costs its cell, not the other maps
            LOG.exception("compare: %s failed", method)
            cells[method] = _failed(f"{type(exc).__name__}: {exc}")
            continue
        if why:
            cells[method] = _skipped(why)
        else:
            ready.append((method, key, step))
    found = Cells([])
    target = request.target
    for group in groups([step.explainers[0].cam for _, _, step in ready], x, target):
        members = [ready[i] for i in group]
        began = time.perf_counter()
        explained = _explain(members, x, target, found.prediction is None)
        shared = time.perf_counter() - began  # the group's pass: each member's time is it and its own drawing
        for (method, key, step), items in zip(members, explained):
            if not isinstance(items, list):  # an error of this method alone
                cells[method] = items
                continue
            if isinstance(items[0], Failed):  # NaN or inf in this method's numbers
                cells[method] = _failed(items[0].message)
                continue
            found.steps.append((key, step))
            drawn = time.perf_counter()
            sink = MemorySink()
            [row] = step.write("upload", array, items, sink).rows
            drawing = time.perf_counter() - drawn
            found.render_seconds += drawing
            kind = "image" if "heatmap" in row["files"] else "heatmap"
            [name] = row["files"].values()
            cells[method] = {"status": "ok", "layer": row["layer"], "map_kind": kind,
                             "map": png_data_url(sink.items[name]),
                             "ms": round((shared + drawing) * 1000, 1)}
            if found.prediction is None:  # the first map's pass gives the prediction every other map explains
                found.prediction = row
                target = row["class_index"]
    found.entries = [{"method": method, **cells[method]} for method in request.methods]
    return found


def _explain(members: list, x: torch.Tensor, target: Any, first: bool) -> list:
    """Per member, ``[(output, 0)]``, ``[Failed]`` or its error cell: the members from one pass where they
    share one; when the shared run raises, each alone, so that the error is the one method's."""
    explainers = [step.explainers[0] for _, _, step in members]
    if len(members) > 1:
        try:
            return run_explainers(explainers, x, ["upload"], target, None)
        except Exception:  # noqa: BLE001 - said below, method by method
            pass
    cells = []
    for explainer in explainers:
        try:
            cells.append(run_explainers([explainer], x, ["upload"], target, None)[0])
        except GradCAMError as exc:
            if first and isinstance(exc, TargetError):
                raise  # an unknown class is the request's error (422), the same for every method
            cells.append(_skipped(str(exc)))
        except Exception as exc:
            LOG.exception("compare: %s failed", explainer.method)
            cells.append(_failed(f"{type(exc).__name__}: {exc}"))
    return cells


def _skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


def _failed(reason: str) -> dict:
    return {"status": "failed", "reason": reason}

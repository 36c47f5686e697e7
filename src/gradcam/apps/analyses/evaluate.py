"""Which method is most faithful to this model on these images: every registered faithfulness metric
(:mod:`gradcam.metrics`: deletion and insertion, Average Drop and Increase in Confidence, and any a plugin
registers) per image and method, with seeded random maps as the yardstick (random values on the layer's
grid, upsampled like the methods' maps). Columns, table and choices come from the metrics' registry; the
mean curves of the metrics that offer them and a few example maps go into a self-contained HTML report."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gradcam.apps.analyses.engines import run_step
from gradcam.apps.analyses.evaluate_step import RANDOM, EvaluateStep
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.pipeline.job import check_engine
from gradcam.errors import ImageError, OptionError
from gradcam.metrics.registry import list_metrics, metric_info
from gradcam.render.files import save_csv, save_json, source_names
from gradcam.render.report import Report

KEYS = ("image", "method", "class_index", "label")
SHORT = {"deletion_auc": "deletion", "insertion_auc": "insertion", "average_drop": "avg drop",
         "increase_in_confidence": "increase"}  # the table's headers, where shorter than the column
EXAMPLES = 4  # the images whose maps the report shows
CANDIDATES = 4  # more images whose overlays the steps draw, in case some of the first EXAMPLES cannot be read
STEP_ONLY = ("curves", "picture", "overlay", "path", "error")  # a step's columns that are not the table's


def metric_columns(metrics: Sequence[str]) -> dict[str, str]:
    """{column: "lower" | "higher"} of the metrics, in order."""
    return {c: d for name in metrics for c, d in metric_info(name).columns.items()}


@dataclass(eq=False)
class Example:
    """One image the report shows: its picture (at most THUMBNAIL pixels on its long side) and each
    method's overlay on it, all (H, W, 3) uint8."""

    image: str
    picture: np.ndarray
    overlays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Evaluation:
    """``rows``: one per image and method (and the random yardstick); ``skipped``: (method, reason) for
    methods that do not apply to the model; ``failed``: (image, reason) for images that could not be read;
    ``metrics``: the metrics scored, whose columns the rows hold; ``examples``: the first EXAMPLES images'
    overlays; :attr:`curves`: the mean curves of the metrics whose results offer ``curves()``."""

    model: str
    methods: list[str]
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list_metrics("faithfulness", default=True))
    protocols: dict[str, str] = field(default_factory=dict)  # metric -> the protocol named, where one was
    examples: list[Example] = field(default_factory=list, compare=False)
    # (curve, method) -> [x, Σ y, images], or None where the x values changed
    _sums: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*KEYS, *metric_columns(self.metrics))

    @property
    def curves(self) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
        """{curve name: {method: (x values, the mean over the images)}}, methods in order, the yardstick last.
        A curve whose x values change from batch to batch has no mean and is left out."""
        out: dict[str, dict] = {}
        for (name, method), kept in self._sums.items():
            if kept is not None:
                x, total, count = kept
                out.setdefault(name, {})[method] = (x.tolist(), (total / count).tolist())
        return out

    def add_curves(self, method: str, curves: Mapping[str, tuple[Any, Any]]) -> None:
        """Add a batch's curves ({name: (x (P,), values (B, P))}) to ``method``'s means."""
        for name, (x, values) in curves.items():
            x = torch.as_tensor(x).detach().double().cpu().reshape(-1)
            values = torch.as_tensor(values).detach().double().cpu().reshape(-1, len(x))
            key = (name, method)
            if key not in self._sums:
                self._sums[key] = [x, values.sum(dim=0), len(values)]
            elif self._sums[key] is not None:
                kept = self._sums[key]
                if kept[0].shape == x.shape and torch.allclose(kept[0], x):
                    kept[1], kept[2] = kept[1] + values.sum(dim=0), kept[2] + len(values)
                else:
                    self._sums[key] = None

    def summary(self) -> list[dict]:
        """Per method (in order, the yardstick last): the means over the images."""
        out = []
        for method in self.methods + [RANDOM]:
            rows = [r for r in self.rows if r["method"] == method]
            if rows:
                out.append({"method": method, "images": len(rows),
                            **{k: sum(r[k] for r in rows) / len(rows) for k in self.columns[len(KEYS):]}})
        return out

    def table(self) -> str:
        """The summary as text, each column's better direction marked (↓ lower, ↑ higher is better)."""
        directions = metric_columns(self.metrics)
        heads = {c: f"{SHORT.get(c, c)} {'↓' if d == 'lower' else '↑'}" for c, d in directions.items()}
        widths = {c: max(12, len(h) + 1) for c, h in heads.items()}
        lines = [f"{'method':<16}{'images':>7}" + "".join(f"{heads[c]:>{widths[c]}}" for c in directions)]
        for s in self.summary():
            lines.append(f"{s['method']:<16}{s['images']:>7}" + "".join(f"{s[c]:>{widths[c]}.4f}" for c in directions))
        return "\n".join(lines)

    def ranked(self) -> list[dict]:
        """:meth:`summary`, best first by the first metric column (its better direction), the yardstick too."""
        column, direction = next(iter(metric_columns(self.metrics).items()))
        sign = 1.0 if direction == "lower" else -1.0
        return sorted(self.summary(), key=lambda s: (not math.isfinite(s[column]), sign * s[column]))

    def summary_json(self) -> dict:
        """What ``summary.json`` holds: plain JSON (a NaN mean is null)."""
        return {
            "model": self.model,
            "metrics": list(self.metrics),
            "protocols": dict(self.protocols),
            "columns": metric_columns(self.metrics),
            "yardstick": RANDOM,
            "methods": {s["method"]: {k: _plain(v) for k, v in s.items() if k != "method"} for s in self.summary()},
            "skipped": [{"method": m, "reason": why} for m, why in self.skipped],
            "failed": [{"image": str(image), "reason": why} for image, why in self.failed],
        }

    def report(self) -> Report:
        """The page: the methods ranked, each mean curve (a line per method), the example maps."""
        directions = metric_columns(self.metrics)
        heads = {c: SHORT.get(c, c) for c in directions}
        heads = heads if len(set(heads.values())) == len(heads) else {c: c for c in directions}
        first = next(iter(directions))
        images = len({r["image"] for r in self.rows})
        named = [f"{m}:{self.protocols[m]}" if m in self.protocols else m for m in self.metrics]
        page = Report(f"Faithfulness of {', '.join(self.methods)}",
                      f"{self.model} · {images} image(s) · metrics: {', '.join(named)}")
        page.text(f"Each method's maps scored per image; {RANDOM} is seeded random maps on the layer's grid, "
                  "the yardstick a faithful method should beat.")
        for method, why in self.skipped:
            page.text(f"Skipped {method}: {why}")
        for image, why in self.failed:
            page.text(f"Not read: {why}")
        rows = [[rank, s["method"], s["images"], *(s[c] for c in directions)]
                for rank, s in enumerate(self.ranked(), start=1)]
        page.table(["rank", "method", "images", *heads.values()], rows, directions={heads[c]: d for c, d in
                   directions.items()}, caption=f"Methods ranked by {heads[first]} ({directions[first]} is better), "
                   f"means over the images; {RANDOM}: the yardstick")
        for name, series in self.curves.items():
            page.curves(f"{name} curve", series, y_label="mean over the images")
        values = {(r["image"], r["method"]): r[first] for r in self.rows}
        for example in self.examples:
            items = [("image", example.picture)] + [
                (f"{method}: {heads[first]} {values[example.image, method]:.3f}", picture)
                for method, picture in example.overlays.items()]
            page.gallery(f"Maps of {example.image}", items)
        return page

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``evaluation.csv`` (every row), ``summary.json`` (:meth:`summary_json`) and ``report.html``
        (:meth:`report`: one self-contained page), each written atomically. Returns their paths by
        {"evaluation", "summary", "report"}."""
        directory = Path(directory)
        columns = self.columns
        rows = ([row[k] for k in columns] for row in self.rows)
        return {"evaluation": save_csv(directory / "evaluation.csv", columns, rows),
                "summary": save_json(self.summary_json(), directory / "summary.json"),
                "report": self.report().save(directory / "report.html")}


def evaluate(
    images: Sequence[Any],
    *,
    model: Any = DEFAULT_MODEL,
    methods: Sequence[str] = ("gradcam",),
    layer: Any = None,
    target: Any = None,
    weights: Any = None,
    device: Any = None,
    steps: int = 20,
    score: str = "probability",
    batch_size: int = 8,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    precision: str = "fp32",
    progress: bool | None = False,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
) -> Evaluation:
    """Score every method's maps of every image with each of ``metrics`` (default: the registered
    faithfulness metrics marked default: deletion and insertion, Average Drop and Increase in Confidence;
    ``"road"`` when named; ``"name:protocol"`` picks a protocol, ``"deletion:rise"``), and seeded random
    maps the same way (each image's seeded by ``seed`` and its name). The maps are the methods' min-max
    normalised maps at the model's input size, of the class ``target`` (default: the prediction); ``steps``,
    ``score`` and the model's normalisation ``std`` go to the metrics that take them. ``precision`` ("fp32",
    "bf16", "fp16", "auto": bf16 where the hardware runs it natively) is how the model runs for the maps and
    for the metrics' perturbed copies (:mod:`gradcam.engine.precision`). ``progress``: a bar over the maps
    scored (images × (methods + random)); None: on a terminal.

    ``engine``: "local" (this process) or "ray" (Ray Data, :mod:`.engines`: ``images`` are then files or URIs,
    scored by ``actors`` actors on Ray started here or on the cluster at ``address``): the same rows."""
    check_engine(engine, address)
    if int(batch_size) < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    settings = dict(model=model, methods=list(methods), layer=layer, target=target, weights=weights, device=device,
                    steps=steps, score=score, seed=seed, metrics=None if metrics is None else list(metrics),
                    precision=precision)
    step = EvaluateStep(**settings)
    result = Evaluation(step.bundle.name, step.methods, skipped=list(step.skipped), metrics=step.metrics,
                        protocols=dict(step.protocols))
    images = list(images)
    names = source_names(images)
    inputs = {"path": images, "name": names, "example": [i < EXAMPLES + CANDIDATES for i in range(len(images))]}
    gathered = _Gathered(result)
    bar = tqdm(total=len(images) * (len(step.methods) + 1), desc="evaluate", unit="map", dynamic_ncols=True,
               disable=engine != "local" or (None if progress is None else not progress))
    with bar:
        for rows in run_step(step, settings, inputs, engine=engine, address=address, actors=actors,
                             batch_size=int(batch_size), progress_bar=progress):
            gathered.add(rows)
            bar.update(sum(1 if not row["error"] else len(step.methods) + 1 for row in rows))
    gathered.finish({name: i for i, name in enumerate(names)})
    if not result.rows:
        raise ImageError("no image could be read: " + "; ".join(why for _, why in result.failed))
    return result


class _Gathered:
    """The driver's half: the steps' rows, in whatever order their batches come, into the evaluation; at the
    end in the images' order (each method's rows, then the yardstick's), and the first EXAMPLES images that
    could be read (among the first EXAMPLES + CANDIDATES, whose overlays the steps drew) as the examples."""

    def __init__(self, result: Evaluation):
        self.result, self.shown, self.failed = result, {}, []

    def add(self, rows: list[dict]) -> None:
        result = self.result
        for row in rows:
            if row["error"]:
                self.failed.append((row["image"], (row["path"], row["error"])))
                continue
            result.add_curves(row["method"], {name: (x, [y]) for name, (x, y) in row["curves"].items()})
            if row["overlay"] is not None:
                example = self.shown.setdefault(row["image"], Example(row["image"], row["picture"]))
                example.overlays[row["method"]] = row["overlay"]
            result.rows.append({k: v for k, v in row.items() if k not in STEP_ONLY})

    def finish(self, order: Mapping[str, int]) -> None:
        result = self.result
        methods = {m: i for i, m in enumerate([*result.methods, RANDOM])}
        result.rows.sort(key=lambda r: (methods[r["method"]], order[r["image"]]))
        result.failed += [failed for _, failed in sorted(self.failed, key=lambda f: order[f[0]])]
        result.examples = sorted(self.shown.values(), key=lambda e: order[e.image])[:EXAMPLES]
        for example in result.examples:
            example.overlays = {m: example.overlays[m] for m in methods if m in example.overlays}


def _plain(value: Any) -> Any:
    """A JSON value: a float that is not finite becomes None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

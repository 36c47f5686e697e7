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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from gradcam.apps.explainer import DEFAULT_MODEL, Explainer, readable_pictures
from gradcam.engine import functional as Fn
from gradcam.engine.methods import method_info
from gradcam.errors import OptionError
from gradcam.metrics.registry import create_metric, list_metrics, metric_info, metric_spec, per_sample
from gradcam.render.files import save_csv, save_json
from gradcam.render.pictures import fit, overlay
from gradcam.render.report import THUMBNAIL, Report

RANDOM = "random"  # the yardstick: uniform random maps, seeded; a method should do better
KEYS = ("image", "method", "class_index", "label")
SHORT = {"deletion_auc": "deletion", "insertion_auc": "insertion", "average_drop": "avg drop",
         "increase_in_confidence": "increase"}  # the table's headers, where shorter than the column
EXAMPLES = 4  # the images whose maps the report shows


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
    progress: bool | None = False,
) -> Evaluation:
    """Score every method's maps of every image with each of ``metrics`` (default: the registered
    faithfulness metrics marked default: deletion and insertion, Average Drop and Increase in Confidence;
    ``"road"`` when named; ``"name:protocol"`` picks a protocol, ``"deletion:rise"``), and seeded random
    maps the same way. The maps are the methods' min-max normalised maps at the model's input size, of the
    class ``target`` (default: the prediction); ``steps``, ``score`` and the model's normalisation ``std``
    go to the metrics that take them. ``progress``: a bar over the maps scored (images × (methods +
    random)); None: on a terminal."""
    if int(batch_size) < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    specs = [metric_spec(m) for m in (list_metrics("faithfulness", default=True) if metrics is None else metrics)]
    if not specs:
        raise OptionError("no metric to evaluate with; choose from " + ", ".join(list_metrics("faithfulness")))
    metrics = [name for name, _ in specs]
    if len(set(metrics)) < len(metrics):
        raise OptionError(f"each metric once, with one protocol: {', '.join(map(str, metrics))}")
    explainers, skipped = [], []
    for method in methods:
        if method_info(method)["output_kind"] != "heatmap":
            skipped.append((method, "gives input-space pictures, not maps of where"))
            continue
        loaded = explainers[0].bundle if explainers else model  # the model is loaded once
        explainers.append(Explainer(loaded, method=method, layer=layer, weights=None if explainers else weights,
                                    device=device))
    if not explainers:
        raise OptionError("no method to evaluate: " + "; ".join(f"{m}: {why}" for m, why in skipped))
    bundle, device = explainers[0].bundle, explainers[0].device
    pictures, names, failed = readable_pictures(images)
    result = Evaluation(bundle.name, [], skipped=skipped, failed=failed, metrics=metrics,
                        protocols={name: o["protocol"] for name, o in specs if o})
    std = getattr(bundle.preprocess, "std", None)
    scorers = {name: create_metric(name, bundle.module, steps=steps, score=score, std=std, **options)
               for name, options in specs}
    generator = torch.Generator().manual_seed(seed)
    usable = []
    for explainer in explainers:
        why = explainer.cam.unsuitable(bundle.preprocess.batch(pictures[:1]).to(device))
        if why:
            result.skipped.append((explainer.method, why))
        else:
            usable.append(explainer)
            result.methods.append(explainer.method)
    if not usable:
        raise OptionError("no method applies to this model: " + "; ".join(f"{m}: {why}" for m, why in result.skipped))
    bar = tqdm(total=len(pictures) * (len(usable) + 1), desc="evaluate", unit="map", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    with bar:
        for start in range(0, len(pictures), batch_size):
            x = bundle.preprocess.batch(pictures[start : start + batch_size]).to(device)
            batch_names = names[start : start + batch_size]
            grid, classes = None, None
            for explainer in usable:
                bar.set_postfix_str(explainer.method)
                out = explainer.cam(x, targets=target)
                grid, classes = grid or tuple(out.raws[0].shape[1:]), out.targets
                _score(result, batch_names, explainer.method, out.maps, classes, x, scorers, bundle)
                _keep_examples(result, start, pictures, names, explainer.method, out.raws,
                               lambda raws, size: explainer.cam.finish(raws, size, "minmax"))
                bar.update(len(x))
            # random maps as smooth as the methods': on the first method's grid, upsampled as its maps are
            # (pixel-wise noise would scatter deletions everywhere and break the image faster than any map)
            noise = torch.rand((len(x), *grid), generator=generator).to(device)
            _score(result, batch_names, RANDOM, noise, classes, x, scorers, bundle)
            _keep_examples(result, start, pictures, names, RANDOM, (noise,), Fn.fuse)
            bar.update(len(x))
    return result


def _score(result: Evaluation, names, method, maps, classes, x, scorers: dict, bundle) -> None:
    values = {}
    for name, metric in scorers.items():
        scored = metric(x, maps, classes)
        values.update(per_sample(name, scored))
        if callable(getattr(scored, "curves", None)):
            result.add_curves(method, scored.curves())
    for i, image in enumerate(names):
        c = int(classes[i])
        result.rows.append({"image": image, "method": method, "class_index": c, "label": bundle.label(c),
                            **{column: float(v[i]) for column, v in values.items()}})


def _keep_examples(result: Evaluation, start: int, pictures: Sequence[Image.Image], names: Sequence[str],
                   method: str, raws: Sequence[torch.Tensor], finish: Callable) -> None:
    """The overlays of the batch's images among the first EXAMPLES (``raws``: the batch's maps at the layer's
    resolution, one tensor per layer; ``finish(raws, size)``: min-max normalised maps at ``size``)."""
    for index in range(start, min(EXAMPLES, start + len(raws[0]))):
        if index == len(result.examples):
            result.examples.append(Example(names[index], np.asarray(fit(pictures[index], THUMBNAIL))))
        example = result.examples[index]
        i = index - start
        heatmap = finish([raw[i : i + 1] for raw in raws], example.picture.shape[:2])[0]
        example.overlays[method] = np.asarray(overlay(Image.fromarray(example.picture), heatmap.float().cpu().numpy()))


def _plain(value: Any) -> Any:
    """A JSON value: a float that is not finite becomes None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

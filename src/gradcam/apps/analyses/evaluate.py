"""Which method is most faithful to this model on these images: every registered faithfulness metric
(:mod:`gradcam.metrics`: deletion and insertion, Average Drop and Increase in Confidence, and any a plugin
registers) per image and method, with seeded random maps as the yardstick (random values on the layer's
grid, upsampled like the methods' maps). Columns, table and choices come from the metrics' registry."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from gradcam.apps.explainer import DEFAULT_MODEL, Explainer, readable_pictures
from gradcam.engine.methods import method_info
from gradcam.errors import OptionError
from gradcam.metrics.registry import create_metric, list_metrics, metric_info, per_sample
from gradcam.render.files import save_csv

RANDOM = "random"  # the yardstick: uniform random maps, seeded; a method should do better
KEYS = ("image", "method", "class_index", "label")
SHORT = {"deletion_auc": "deletion", "insertion_auc": "insertion", "average_drop": "avg drop",
         "increase_in_confidence": "increase"}  # the table's headers, where shorter than the column


def metric_columns(metrics: Sequence[str]) -> dict[str, str]:
    """{column: "lower" | "higher"} of the metrics, in order."""
    return {c: d for name in metrics for c, d in metric_info(name).columns.items()}


@dataclass
class Evaluation:
    """``rows``: one per image and method (and the random yardstick); ``skipped``: (method, reason) for
    methods that do not apply to the model; ``failed``: (image, reason) for images that could not be read;
    ``metrics``: the metrics scored, whose columns the rows hold."""

    model: str
    methods: list[str]
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list_metrics("faithfulness"))

    @property
    def columns(self) -> tuple[str, ...]:
        return (*KEYS, *metric_columns(self.metrics))

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

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``evaluation.csv``: every row, written atomically. Returns {"evaluation": path}."""
        columns = self.columns
        rows = ([row[k] for k in columns] for row in self.rows)
        return {"evaluation": save_csv(Path(directory) / "evaluation.csv", columns, rows)}


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
    """Score every method's maps of every image with each of ``metrics`` (default: every registered
    faithfulness metric: deletion and insertion, Average Drop and Increase in Confidence), and seeded
    random maps the same way. The maps are the methods' min-max normalised maps at the model's input
    size, of the class ``target`` (default: the prediction); ``steps`` and ``score`` go to the metrics that
    take them. ``progress``: a bar over the maps scored (images × (methods + random)); None: on a terminal."""
    if int(batch_size) < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    metrics = list_metrics("faithfulness") if metrics is None else list(metrics)
    if not metrics:
        raise OptionError("no metric to evaluate with; choose from " + ", ".join(list_metrics("faithfulness")))
    metric_columns(metrics)  # every name is known
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
    result = Evaluation(bundle.name, [], skipped=skipped, failed=failed, metrics=metrics)
    scorers = {name: create_metric(name, bundle.module, steps=steps, score=score) for name in metrics}
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
                bar.update(len(x))
            # random maps as smooth as the methods': on the first method's grid, upsampled as its maps are
            # (pixel-wise noise would scatter deletions everywhere and break the image faster than any map)
            noise = torch.rand((len(x), *grid), generator=generator).to(device)
            _score(result, batch_names, RANDOM, noise, classes, x, scorers, bundle)
            bar.update(len(x))
    return result


def _score(result: Evaluation, names, method, maps, classes, x, scorers: dict, bundle) -> None:
    values = {}
    for name, metric in scorers.items():
        values.update(per_sample(name, metric(x, maps, classes)))
    for i, image in enumerate(names):
        c = int(classes[i])
        result.rows.append({"image": image, "method": method, "class_index": c, "label": bundle.label(c),
                            **{column: float(v[i]) for column, v in values.items()}})

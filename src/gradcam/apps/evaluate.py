"""Which method is most faithful to this model on these images: deletion, insertion and Average Drop
per image and method (:mod:`gradcam.engine.faithfulness`), with seeded random maps as the yardstick
(random values on the layer's grid, upsampled like the methods' maps)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from gradcam.apps.explainer import DEFAULT_MODEL, Explainer, readable_pictures
from gradcam.engine.faithfulness import Confidence, DeletionInsertion
from gradcam.engine.methods import method_info
from gradcam.errors import OptionError
from gradcam.render.files import save_csv

RANDOM = "random"  # the yardstick: uniform random maps, seeded; a method should do better
COLUMNS = ("image", "method", "class_index", "label", "deletion_auc", "insertion_auc", "average_drop",
           "increase_in_confidence")


@dataclass
class Evaluation:
    """``rows``: one per image and method (and the random yardstick); ``skipped``: (method, reason) for
    methods that do not apply to the model; ``failed``: (image, reason) for images that could not be read."""

    model: str
    methods: list[str]
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> list[dict]:
        """Per method (in order, the yardstick last): the means over the images."""
        out = []
        for method in self.methods + [RANDOM]:
            rows = [r for r in self.rows if r["method"] == method]
            if rows:
                out.append({"method": method, "images": len(rows),
                            **{k: sum(r[k] for r in rows) / len(rows) for k in COLUMNS[4:]}})
        return out

    def table(self) -> str:
        """The summary as text: deletion (lower is better), insertion (higher is better), Average Drop
        (lower is better), Increase in Confidence (higher is better)."""
        lines = [f"{'method':<16}{'images':>7}{'deletion ↓':>12}{'insertion ↑':>13}{'avg drop ↓':>12}"
                 f"{'increase ↑':>12}"]
        for s in self.summary():
            lines.append(f"{s['method']:<16}{s['images']:>7}{s['deletion_auc']:>12.4f}{s['insertion_auc']:>13.4f}"
                         f"{s['average_drop']:>12.4f}{s['increase_in_confidence']:>12.2f}")
        return "\n".join(lines)

    def save(self, directory: str | os.PathLike) -> Path:
        """``evaluation.csv``: every row, written atomically."""
        return save_csv(Path(directory) / "evaluation.csv", COLUMNS, ([row[k] for k in COLUMNS] for row in self.rows))


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
) -> Evaluation:
    """Score every method's maps of every image with deletion, insertion and Average Drop / Increase in
    Confidence, and seeded random maps the same way. The maps are the methods' min-max normalised maps
    at the model's input size, of the class ``target`` (default: the prediction)."""
    if int(batch_size) < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
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
    result = Evaluation(bundle.name, [], skipped=skipped, failed=failed)
    deletion = DeletionInsertion(bundle.module, steps=steps, score=score)
    confidence = Confidence(bundle.module, score=score)
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
    for start in range(0, len(pictures), batch_size):
        x = bundle.preprocess.batch(pictures[start : start + batch_size]).to(device)
        batch_names = names[start : start + batch_size]
        grid, classes = None, None
        for explainer in usable:
            out = explainer.cam(x, targets=target)
            grid, classes = grid or tuple(out.raws[0].shape[1:]), out.targets
            _score(result, batch_names, explainer.method, out.maps, classes, x, deletion, confidence, bundle)
        # random maps as smooth as the methods': on the first method's grid, upsampled as its maps are
        # (pixel-wise noise would scatter deletions everywhere and break the image faster than any map)
        noise = torch.rand((len(x), *grid), generator=generator).to(device)
        _score(result, batch_names, RANDOM, noise, classes, x, deletion, confidence, bundle)
    return result


def _score(result: Evaluation, names, method, maps, classes, x, deletion, confidence, bundle) -> None:
    areas = deletion(x, maps, classes)
    kept = confidence(x, maps, classes)
    for i, name in enumerate(names):
        c = int(classes[i])
        result.rows.append({"image": name, "method": method, "class_index": c, "label": bundle.label(c),
                            "deletion_auc": float(areas.deletion_auc[i]), "insertion_auc": float(areas.insertion_auc[i]),
                            "average_drop": float(kept.drop[i]),
                            "increase_in_confidence": float(kept.increase[i])})

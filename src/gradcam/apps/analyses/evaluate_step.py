"""``evaluate``'s per-batch step: a batch of decoded images in, per image and method (and the random yardstick)
the faithfulness metrics' values out, as plain rows. The local engine and a Ray Data actor call the same step,
so both give the same numbers; the driver (:mod:`.evaluate`) gathers the rows into means, curves and the report.

The yardstick's random map of an image is seeded by the image's name (and the job's seed), not by its place in
a stream of batches: the same map whichever batch, actor or engine scores it."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from gradcam.apps.analyses.engines import preprocessed
from gradcam.apps.explainer import DEFAULT_MODEL, Explainer
from gradcam.engine import functional as Fn
from gradcam.engine.methods import method_info
from gradcam.errors import OptionError
from gradcam.metrics.registry import create_metric, list_metrics, metric_spec, per_sample
from gradcam.render.pictures import fit, overlay
from gradcam.render.report import THUMBNAIL

RANDOM = "random"  # the yardstick: uniform random maps, seeded; a method should do better


class EvaluateStep:
    """One evaluation's step: its methods' explainers (the model loaded once), the metrics' scorers, and the
    methods that do not apply (``skipped``: (method, why)).

    ``step(batch)`` takes plain columns: "name" (N,) the images' names, "image" (N,) decoded RGB arrays
    (H, W, 3) uint8, optionally "path" (N,) where each came from, "x" (N, C, H, W) the preprocessed inputs
    (else the step preprocesses "image"), "error" (N,) why an image could not be read ("" for the others)
    and "example" (N,) bool, the images whose overlays to draw. It returns one row per image and method
    (the methods in order, then the yardstick): "image", "method", "class_index", "label", each metric's
    columns, "curves" ({curve: (x, the image's values)}), "picture" and "overlay" (an example's thumbnail
    and the map on it, else None), "path" and "error" (""); an image that could not be read is one row with
    its "error" and no method."""

    def __init__(self, *, model: Any = DEFAULT_MODEL, methods: Sequence[str] = ("gradcam",), layer: Any = None,
                 target: Any = None, weights: Any = None, device: Any = None, steps: int = 20,
                 score: str = "probability", seed: int = 0, metrics: Sequence[str] | None = None,
                 precision: str = "fp32"):
        specs = [metric_spec(m) for m in (list_metrics("faithfulness", default=True) if metrics is None else metrics)]
        if not specs:
            raise OptionError("no metric to evaluate with; choose from " + ", ".join(list_metrics("faithfulness")))
        self.metrics = [name for name, _ in specs]
        if len(set(self.metrics)) < len(self.metrics):
            raise OptionError(f"each metric once, with one protocol: {', '.join(map(str, self.metrics))}")
        self.protocols = {name: o["protocol"] for name, o in specs if o}
        explainers, self.skipped = [], []
        for method in methods:
            if method_info(method)["output_kind"] != "heatmap":
                self.skipped.append((method, "gives input-space pictures, not maps of where"))
                continue
            loaded = explainers[0].bundle if explainers else model  # the model is loaded once
            explainers.append(Explainer(loaded, method=method, layer=layer, weights=None if explainers else weights,
                                        device=device, precision=precision))
        if not explainers:
            raise OptionError("no method to evaluate: " + "; ".join(f"{m}: {why}" for m, why in self.skipped))
        self.bundle, self.device = explainers[0].bundle, explainers[0].device
        std = getattr(self.bundle.preprocess, "std", None)
        self.scorers = {name: create_metric(name, self.bundle.module, steps=steps, score=score, std=std,
                                            precision=precision, **options)
                        for name, options in specs}
        probe = self.bundle.probe().to(self.device)
        self.explainers = []
        for explainer in explainers:
            why = explainer.cam.unsuitable(probe)
            if why:
                self.skipped.append((explainer.method, why))
            else:
                self.explainers.append(explainer)
        if not self.explainers:
            raise OptionError("no method applies to this model: " + "; ".join(f"{m}: {why}" for m, why in self.skipped))
        self.target, self.seed = target, int(seed)

    @property
    def methods(self) -> list[str]:
        """The methods scored, in order (the yardstick not among them)."""
        return [explainer.method for explainer in self.explainers]

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        names = [str(n) for n in batch["name"]]
        paths = [str(p) for p in batch.get("path", names)]
        errors = [str(e) if e is not None else "" for e in batch.get("error", [""] * len(names))]
        examples = [bool(e) for e in batch.get("example", [False] * len(names))]
        images = list(batch["image"])
        good = [j for j, error in enumerate(errors) if not error]
        rows = [] if not good else self._scored(
            [names[j] for j in good], [paths[j] for j in good], preprocessed(batch, good, self.bundle.preprocess),
            [np.asarray(images[j], dtype=np.uint8) if examples[j] else None for j in good])
        rows += [{"image": names[j], "method": None, "path": paths[j], "error": errors[j]}
                 for j in range(len(names)) if errors[j]]
        keys = dict.fromkeys(key for row in rows for key in row)
        return {key: [row.get(key) for row in rows] for key in keys}

    def _scored(self, names: list[str], paths: list[str], x: torch.Tensor, shown: list) -> list[dict]:
        """The rows of the readable images: each method's maps, then the yardstick's, scored."""
        x = x.to(self.device)
        pictures = [None if s is None else np.asarray(fit(Image.fromarray(s), THUMBNAIL)) for s in shown]
        rows, grid, classes = [], None, None
        for explainer in self.explainers:
            out = explainer.cam(x, targets=self.target)
            grid, classes = grid or tuple(out.raws[0].shape[1:]), out.targets
            overlays = _overlays(pictures, out.raws, lambda raws, size: explainer.cam.finish(raws, size, "minmax"))
            rows += self._rows(names, paths, explainer.method, out.maps, classes, x, pictures, overlays)
        # random maps as smooth as the methods': on the first method's grid, upsampled as its maps are
        # (pixel-wise noise would scatter deletions everywhere and break the image faster than any map)
        noise = torch.stack([random_map(name, grid, self.seed) for name in names]).to(self.device)
        overlays = _overlays(pictures, (noise,), Fn.fuse)
        return rows + self._rows(names, paths, RANDOM, noise, classes, x, pictures, overlays)

    def _rows(self, names, paths, method, maps, classes, x, pictures, overlays) -> list[dict]:
        values, curves = {}, [{} for _ in names]
        for name, metric in self.scorers.items():
            scored = metric(x, maps, classes)
            values.update(per_sample(name, scored))
            if callable(getattr(scored, "curves", None)):
                for curve, (xs, ys) in scored.curves().items():
                    xs = torch.as_tensor(xs).detach().double().cpu().reshape(-1).tolist()
                    ys = torch.as_tensor(ys).detach().double().cpu().reshape(len(names), -1)
                    for i in range(len(names)):
                        curves[i][curve] = (xs, ys[i].tolist())
        rows = []
        for i, image in enumerate(names):
            c = int(classes[i])
            rows.append({"image": image, "method": method, "class_index": c, "label": self.bundle.label(c),
                         **{column: float(v[i]) for column, v in values.items()}, "curves": curves[i],
                         "picture": pictures[i], "overlay": overlays[i], "path": paths[i], "error": ""})
        return rows


def random_map(name: str, grid: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Image ``name``'s yardstick map: uniform random values on ``grid``, seeded by ``seed`` and the name."""
    key = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big") >> 1
    return torch.rand(tuple(grid), generator=torch.Generator().manual_seed(key))


def _overlays(pictures: list, raws: Sequence[torch.Tensor], finish) -> list:
    """Each shown picture with its map on it ((H, W, 3) uint8), None for the others (``raws``: the batch's maps
    at the layer's resolution, one tensor per layer; ``finish(raws, size)``: min-max normalised maps at
    ``size``)."""
    out = []
    for i, picture in enumerate(pictures):
        if picture is None:
            out.append(None)
            continue
        heatmap = finish([raw[i : i + 1] for raw in raws], picture.shape[:2])[0]
        out.append(np.asarray(overlay(Image.fromarray(picture), heatmap.float().cpu().numpy())))
    return out

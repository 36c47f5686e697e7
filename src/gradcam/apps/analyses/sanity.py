"""The sanity check of a data set's maps (Adebayo et al., NeurIPS 2018): re-initialise the model's layers
from the output down, cascading, and one at a time, independently (:class:`gradcam.metrics.sanity.
ParameterRandomisation`), and follow how much each method's maps still rank the pixels like the trained
model's (Spearman, mean over the images). A map that explains the model must change with it.

The verdict, per method, on the cascade: it **passes** when the mean similarity has fallen below
``threshold`` once the top ``depth`` layers are random (default: the top half of the layers with
parameters). A map that turns constant on the random model has no rank correlation (NaN); it counts as
0, no likeness left, in the means."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gradcam.apps.explainer import DEFAULT_MODEL, readable_pictures
from gradcam.apps.model_cache import bundle_on_device
from gradcam.errors import OptionError
from gradcam.metrics.sanity import ORDERS, ParameterRandomisation
from gradcam.render.files import save_csv, save_json
from gradcam.render.pictures import fit, map_overlay
from gradcam.render.report import THUMBNAIL, Report

CASCADE, INDEPENDENT = "top_down", "independent"
WORDS = {CASCADE: "cascading", INDEPENDENT: "independent", "bottom_up": "bottom-up"}
STEPS = {CASCADE: "layers re-initialised from the output down", "bottom_up": "layers re-initialised from the input up",
         INDEPENDENT: "the one layer re-initialised (1: the first, at the input)"}


@dataclass
class Curve:
    """One method under one order: ``layers`` re-initialised at each step, ``similarity`` (steps, images)."""

    method: str
    order: str
    layers: list[str]
    similarity: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """(steps,) the mean over the images, a NaN (a constant map) counted as 0."""
        return np.nan_to_num(self.similarity, nan=0.0).mean(axis=1)


@dataclass
class Sanity:
    """``curves`` {(method, order): Curve}; the verdict per method from the cascade at ``depth``."""

    model: str
    methods: list[str]
    images: list[str]
    depth: int
    threshold: float
    curves: dict[tuple[str, str], Curve] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) not read
    examples: dict[str, tuple[Image.Image, Image.Image, Image.Image]] = field(default_factory=dict, repr=False)
    # method -> (the first image, its trained map's overlay, its overlay once the top `depth` layers are random)

    def similarity_at_depth(self, method: str) -> float:
        """The cascade's mean similarity once the top ``depth`` layers are random."""
        curve = self.curves[method, CASCADE]
        return float(curve.mean[min(self.depth, len(curve.layers)) - 1])

    def passes(self, method: str) -> bool:
        return self.similarity_at_depth(method) < self.threshold

    @property
    def flagged(self) -> list[str]:
        """The methods that fail the check."""
        return [m for m in self.methods if (m, CASCADE) in self.curves and not self.passes(m)]

    def verdicts(self) -> list[dict]:
        out = []
        for method in self.methods:
            row = {"method": method}
            if (method, CASCADE) in self.curves:
                cascade = self.curves[method, CASCADE]
                row |= {"passes": self.passes(method), "at_depth": self.similarity_at_depth(method),
                        "all_random": float(cascade.mean[-1])}
            if (method, INDEPENDENT) in self.curves:
                row["independent_min"] = float(self.curves[method, INDEPENDENT].mean.min())
            out.append(row)
        return out

    def table(self) -> str:
        lines = [f"{'method':<18}{'verdict':>8}{f'top {self.depth} random':>16}{'all random':>12}{'indep. min':>12}"]
        for v in self.verdicts():
            verdict = "" if "passes" not in v else "passes" if v["passes"] else "FAILS"
            cells = [f"{v[k]:>{w}.3f}" if k in v else f"{'-':>{w}}"
                     for k, w in (("at_depth", 16), ("all_random", 12), ("independent_min", 12))]
            lines.append(f"{v['method']:<18}{verdict:>8}" + "".join(cells))
        return "\n".join(lines)

    def summary(self) -> str:
        if not any(o == CASCADE for _, o in self.curves):
            return "no cascading randomisation, no verdict"
        bad = self.flagged
        return (f"{', '.join(bad)} still rank the pixels as on the trained model once its top {self.depth} "
                "layers are random: those maps do not show what the model learned" if bad
                else f"every method's maps change once the top {self.depth} layers are random")

    def summary_json(self) -> dict:
        return {"model": self.model, "images": len(self.images), "depth": self.depth, "threshold": self.threshold,
                "methods": {v.pop("method"): v for v in self.verdicts()},
                "flagged": self.flagged,
                "curves": {f"{m}:{o}": {"layers": c.layers, "mean": c.mean.tolist()}
                           for (m, o), c in self.curves.items()},
                "failed": [{"image": str(i), "reason": why} for i, why in self.failed]}

    def rows(self):
        for (method, order), curve in self.curves.items():
            for step, layer in enumerate(curve.layers, start=1):
                for image, value in zip(self.images, curve.similarity[step - 1]):
                    yield [method, order, step, layer, image, None if math.isnan(value) else round(float(value), 6)]

    def report(self) -> Report:
        page = Report(f"Sanity check of {', '.join(self.methods)}",
                      f"{self.model} · {len(self.images)} image(s) · model parameter randomisation")
        page.text("Adebayo et al. (2018): the model's layers are re-initialised from the output down, and each "
                  "map is compared with the trained model's by Spearman's rank correlation. A map that explains "
                  f"the model changes with it: a method passes when its similarity is below {self.threshold} once "
                  f"the top {self.depth} layers are random. {self.summary()}.")
        for image, why in self.failed:
            page.text(f"Not read: {why}")
        verdicts = self.verdicts()
        page.table(["method", "verdict", f"top {self.depth} random", "all random", "independent min"],
                   [[v["method"], "" if "passes" not in v else "passes" if v["passes"] else "fails",
                     *(v.get(k, "") for k in ("at_depth", "all_random", "independent_min"))] for v in verdicts],
                   directions={f"top {self.depth} random": "lower", "all random": "lower"},
                   caption="Mean rank correlation with the trained model's maps (lower: the map follows the model)")
        for order in (o for o in ORDERS if any(k[1] == o for k in self.curves)):
            series = {m: (list(range(1, len(c.layers) + 1)), c.mean.tolist())
                      for (m, o), c in self.curves.items() if o == order}
            page.curves(f"{WORDS[order].capitalize()} randomisation", series,
                        x_label=STEPS[order], y_label="mean rank correlation")
        for method, (picture, trained, random) in self.examples.items():
            page.gallery(f"{method} on {self.images[0]}", [("image", picture), ("trained model", trained),
                                                           (f"top {self.depth} layers random", random)])
        return page

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``sanity.csv`` (per method, order, step and image), ``summary.json``, ``report.html``; atomic."""
        directory = Path(directory)
        return {"sanity": save_csv(directory / "sanity.csv",
                                   ["method", "order", "step", "layer", "image", "similarity"], self.rows()),
                "summary": save_json(self.summary_json(), directory / "summary.json"),
                "report": self.report().save(directory / "report.html")}


def sanity(images: Sequence[Any], *, model: Any = DEFAULT_MODEL, methods: Sequence[str] = ("gradcam",),
           layer: Any = None, target: Any = None, weights: Any = None, device: Any = None,
           orders: Sequence[str] = (CASCADE, INDEPENDENT), depth: int | None = None, threshold: float = 0.3,
           seed: int = 42, batch_size: int = 8, progress: bool | None = False) -> Sanity:
    """Randomise ``model`` layer by layer under each of ``orders`` and score each of ``methods``' maps of
    ``images`` (of the class ``target``, default the prediction) against the trained model's."""
    unknown = [o for o in orders if o not in ORDERS]
    if unknown or not orders:
        raise OptionError(f"orders must be among {', '.join(ORDERS)}, got {', '.join(orders) or 'none'}")
    if not 0.0 <= threshold <= 1.0 or int(batch_size) < 1 or (depth is not None and int(depth) < 1):
        raise OptionError(f"threshold in [0, 1], batch_size >= 1 and depth >= 1, got {threshold}, {batch_size}, "
                          f"{depth}")
    bundle, device = bundle_on_device(model, weights, device)
    pictures, names, failed = readable_pictures(images)
    checks = {(m, o): ParameterRandomisation(m, layer=layer, order=o, seed=seed) for m in methods for o in orders}
    layers = next(iter(checks.values())).layers_of(bundle.module)
    if not layers:
        raise OptionError(f"{bundle.name} has no layer with parameters to re-initialise")
    depth = min(int(depth), len(layers)) if depth is not None else math.ceil(len(layers) / 2)
    result = Sanity(bundle.name, list(methods), names, depth, float(threshold), failed=failed)
    batches = math.ceil(len(pictures) / batch_size)
    bar = tqdm(total=len(checks) * len(layers) * batches, desc="sanity", unit="layer", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    parts: dict[tuple[str, str], list] = {key: [] for key in checks}
    steps: dict[tuple[str, str], list[str]] = {}  # the layer of each step, per check
    with bar:
        for start in range(0, len(pictures), batch_size):
            x = bundle.preprocess.batch(pictures[start : start + batch_size]).to(device)
            for (method, order), check in checks.items():
                bar.set_postfix_str(f"{method} {WORDS[order]}")
                keep = depth if order == CASCADE and start == 0 else None
                out = check(bundle.module, x, target, keep=keep, on_step=lambda _: bar.update())
                parts[method, order].append(out.similarity.cpu().numpy())
                if keep is not None:
                    picture = fit(pictures[0], THUMBNAIL)
                    result.examples[method] = (picture, *(map_overlay(picture, m[0].detach().float().cpu().numpy())
                                                          for m in (out.trained, out.kept)))
                steps[method, order] = out.layers
    for (method, order), chunks in parts.items():
        result.curves[method, order] = Curve(method, order, steps[method, order], np.concatenate(chunks, axis=1))
    return result

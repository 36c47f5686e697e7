"""Several models on the same images: each with its own preprocessing and automatic layer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from gradcam.apps.device import choose_device
from gradcam.apps.explainer import Explainer, Explanation, readable_pictures
from gradcam.errors import ModelError
from gradcam.models.sources import load_model
from gradcam.models.weights import OFFLINE_HINT
from gradcam.render import pictures as draw
from gradcam.render.files import save_png


@dataclass
class Comparison:
    """``columns[m][i]``: model m's explanation of image i; ``skipped``: (model, reason) not compared."""

    images: list[Image.Image]
    stems: list[str]
    models: list[str]
    columns: list[list[Explanation]]
    target: Any = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) not explained

    @property
    def title(self) -> str:
        if self.target is None:
            return "each model explains its own prediction"
        return f"every model explains class {self.target!r}"

    def figure(self) -> Image.Image:
        """Rows = images; columns = the original, then one overlay per model titled with its class."""
        rows, titles = [], []
        for i, image in enumerate(self.images):
            rows.append([image] + [column[i].overlay() for column in self.columns])
            titles.append([self.stems[i]] + [f"{model}\n{column[i].label} ({column[i].probability:.1%})"
                                             for model, column in zip(self.models, self.columns)])
        return draw.grid(rows, titles, title=self.title)

    def save(self, directory: str | os.PathLike, name: str = "compare") -> dict[str, Path]:
        """Each model's pictures (``<image>.<model>.<method>.<kind>.png``) and the grid ``<name>_models.png``."""
        directory = Path(directory)
        written = {}
        for model, column in zip(self.models, self.columns):
            for stem, explanation in zip(self.stems, column):
                for kind, path in explanation.save(directory, f"{stem}.{_safe(model)}").items():
                    written[f"{stem}/{model}/{kind}"] = path
        written["figure"] = save_png(self.figure(), directory / f"{name}_models.png")
        return written


def compare(
    images: Sequence[Any],
    models: Sequence[str],
    *,
    method: str = "gradcam",
    target: Any = None,
    normalize: str = "minmax",
    colormap: str = "jet",
    alpha: float = 0.5,
    device: Any = None,
) -> Comparison:
    """Explain every image with every model. A model spec is a name (``resnet50``, ``timm/<name>``),
    ``name=WEIGHTS_PATH`` or ``name:random`` (seeded random weights, to try a pipeline); a model whose
    weights cannot be had is skipped with the reason, and the others are still compared."""
    device = choose_device(device)
    pictures, stems, failed = readable_pictures(images)  # a bad image is reported and left out
    names, columns, skipped = [], [], []
    for spec in models:
        try:
            bundle = load_model_spec(spec, device=device)
        except ModelError as exc:  # compare's spelling of a local weights file is NAME=PATH
            name = spec.split("=", 1)[0]
            skipped.append((spec, str(exc).replace(
                OFFLINE_HINT, f"pass a local file as {name}=PATH (or {name}:random for seeded random weights)")))
            continue
        explainer = Explainer(bundle, method=method, normalize=normalize, colormap=colormap, alpha=alpha,
                              device=device)
        columns.append(explainer.explain(pictures, target, names=stems))
        names.append(bundle.name)
    if not columns:
        raise ModelError("no model could be loaded: " + "; ".join(f"{m}: {why}" for m, why in skipped))
    return Comparison(pictures, stems, names, columns, target, skipped, failed)


def load_model_spec(spec: str, device: Any = None):
    """``name``, ``name=WEIGHTS_PATH`` or ``name:random`` -> a loaded model bundle."""
    spec = spec.strip()
    if "=" in spec:
        name, weights = spec.split("=", 1)
        return load_model(name, weights, device=device)
    return load_model(spec, device=device)


def _safe(name: str) -> str:
    return name.replace("/", "-").replace(":", "-").replace("=", "-")

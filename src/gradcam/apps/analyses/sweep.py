"""Maps of many layers of one model from one forward and one backward pass, shallow to deep."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.model_cache import bundle_on_device
from gradcam.engine.layers import stage_layers
from gradcam.engine.methods import create_method
from gradcam.io.images import load_image
from gradcam.render import pictures as draw
from gradcam.render.files import picture_name, save_png, source_name, source_names


@dataclass
class LayerMap:
    name: str
    size: tuple[int, int]  # the layer's feature-map size (h, w)
    heatmap: np.ndarray  # float32 at the image's resolution


@dataclass
class Sweep:
    """One image explained at several layers (same class, same forward pass)."""

    image: Image.Image
    class_index: int
    label: str
    probability: float
    method: str
    layers: list[LayerMap]
    colormap: str = "jet"
    alpha: float = 0.5
    stem: str = "image"

    def figure(self, columns: int = 4) -> Image.Image:
        panels = [self.image] + [draw.overlay(self.image, m.heatmap, colormap=self.colormap, alpha=self.alpha)
                                 for m in self.layers]
        titles = [f"{self.label} ({self.probability:.1%})"] + [f"{m.name} ({m.size[0]}×{m.size[1]})"
                                                                for m in self.layers]
        return draw.wrapped_grid(panels, titles, columns=columns, title=f"{self.method}: shallow to deep")

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``<image>.sweep.figure.png`` and ``<image>.<layer>.<method>.overlay.png`` per layer, written
        atomically."""
        directory = Path(directory)
        written = {"figure": save_png(self.figure(), directory / picture_name(self.stem, "sweep", "figure"))}
        for m in self.layers:
            picture = draw.overlay(self.image, m.heatmap, colormap=self.colormap, alpha=self.alpha)
            layer = m.name.replace("/", "-")  # an ONNX node's name holds slashes: one file, not folders
            written[m.name] = save_png(picture,
                                       directory / picture_name(f"{self.stem}.{layer}", self.method, "overlay"))
        return written


def sweep(
    image: Any,
    *,
    model: Any = DEFAULT_MODEL,
    layers: Sequence[str] | None = None,
    method: str = "gradcam",
    target: Any = None,
    normalize: str = "minmax",
    colormap: str = "jet",
    alpha: float = 0.5,
    weights: Any = None,
    device: Any = None,
) -> Sweep:
    """Explain ``image`` at ``layers`` (default: one per resolution stage) with every layer hooked at
    once: one forward pass and, for gradient methods, one backward pass for all of them."""
    bundle, device = bundle_on_device(model, weights, device)
    picture = load_image(image)
    x = bundle.preprocess.batch([picture]).to(device)
    names = list(layers) if layers else stage_layers(bundle.module, x)
    cam = create_method(method, bundle.module, names, labels=bundle.labels)
    out = cam(x, targets=target, normalize="none")
    raws = out.raws
    size = (picture.height, picture.width)
    maps = [LayerMap(name, tuple(raw.shape[-2:]), cam.finish([raw], size, normalize)[0].cpu().numpy())
            for name, raw in zip(names, raws)]
    index = int(out.targets[0])
    label = bundle.label(index)
    return Sweep(picture, index, label, float(out.probabilities[0]), method, maps, colormap, alpha, source_name(image))


def sweeps(images: Sequence[Any], **options: Any) -> list[Sweep]:
    """:func:`sweep` of each image (the model loaded once), each named apart (:func:`source_names`)."""
    results = []
    for image, name in zip(images, source_names(images)):
        result = sweep(image, **options)
        result.stem = name
        results.append(result)
    return results

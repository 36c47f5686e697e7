"""The picture of Deep Feature Factorization's concepts: each pixel coloured by the concept strongest
there (its brightness by that concept's map), over the image, with a legend naming each concept's top
classes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from gradcam.errors import VisualizeError
from gradcam.render.pictures import render_figure


def concept_colours(count: int) -> np.ndarray:
    """(count, 3) distinct colours in [0, 1] (matplotlib's tab10, then tab20)."""
    table = colormaps["tab10" if count <= 10 else "tab20"].colors
    return np.array([table[i % len(table)] for i in range(count)], dtype=np.float32)


def concepts_overlay(image: Image.Image, maps: np.ndarray, *, image_weight: float = 0.4) -> Image.Image:
    """``image`` with each pixel in the colour of its strongest concept, scaled by that concept's value;
    ``maps`` (k, H, W) in [0, 1] at the image's size."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[1:] != (image.height, image.width):
        raise VisualizeError(f"maps must be (k, {image.height}, {image.width}) for this image, got {maps.shape}")
    maps = np.clip(np.nan_to_num(maps), 0.0, 1.0)
    strongest = maps.argmax(axis=0)
    value = np.take_along_axis(maps, strongest[None], axis=0)[0]
    coloured = concept_colours(maps.shape[0])[strongest] * value[..., None]
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    blended = image_weight * rgb + (1.0 - image_weight) * coloured
    return Image.fromarray(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))


def concept_legend(top_classes: Sequence[Sequence[tuple[int | str, float]]], labels: Sequence[str] | None = None,
                   shares: Sequence[float] | None = None) -> list[str]:
    """One line per concept: "concept i: class (p), class (p)", each class an index into ``labels`` or a
    name; with ``shares``, each concept's share of the image after its number: "concept i (40%): …"."""
    lines = []
    for i, classes in enumerate(top_classes):
        names = [f"{labels[c] if labels is not None and isinstance(c, int) and c < len(labels) else c} ({p:.2f})"
                 for c, p in classes]
        share = f" ({shares[i]:.0%})" if shares is not None else ""
        lines.append(f"concept {i}{share}: " + (", ".join(names) if names else "no classifier head"))
    return lines


def concepts_picture(image: Image.Image, maps: np.ndarray, legend: Sequence[str], *, title: str = "",
                     dpi: int = 100) -> Image.Image:
    """The original and the concepts' overlay side by side, and the legend below them."""
    maps = np.asarray(maps)
    if len(legend) != maps.shape[0]:
        raise VisualizeError(f"one legend line per concept: {maps.shape[0]} concepts, {len(legend)} lines")
    shown = concepts_overlay(image, maps)
    aspect = image.height / image.width
    fig = Figure(figsize=(6.5, 3.2 * aspect + 0.4 + 0.22 * len(legend)), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 2)
    axes[0].imshow(np.asarray(image.convert("RGB")))
    axes[1].imshow(np.asarray(shown))
    for ax, name in zip(axes, ("original", "concepts")):
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    colours = concept_colours(len(legend))
    fig.legend(handles=[Patch(color=tuple(c), label=line) for c, line in zip(colours, legend)],
               loc="outside lower center", fontsize=8, frameon=False, ncols=1)
    if title:
        fig.suptitle(title, fontsize=11)
    return render_figure(fig)

"""Volumes (CT, MRI, any 3-D array) drawn: a map slice by slice, and a grid of slices; reading them is
:mod:`gradcam.io.volumes`."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from gradcam.errors import VisualizeError
from gradcam.render.pictures import overlay

GRID_SLICES = 16
"""How many slices :func:`slice_grid` shows at most when not told: all of a volume up to this depth."""


def slice_pictures(volume: np.ndarray, heatmap: np.ndarray, *, slices: int | None = None, colormap: str = "jet",
                   alpha: float = 0.5) -> list[tuple[int, Image.Image]]:
    """(index, picture) of axial slices ``volume[d]`` overlaid with ``heatmap[d]``: every slice, or
    ``slices`` evenly spaced ones. The volume (a (C, D, H, W) one: the mean of its channels) is scaled to
    grey by its minimum and maximum over the whole volume, so that slices compare."""
    grey = _grey(volume)
    heatmap = np.asarray(heatmap)
    if heatmap.shape != grey.shape:
        raise VisualizeError(f"map of shape {heatmap.shape} for a volume of shape {grey.shape} (D, H, W)")
    depth = grey.shape[0]
    count = depth if slices is None else min(_positive(slices, "slices"), depth)
    indices = np.unique(np.rint(np.linspace(0, depth - 1, count)).astype(int))
    return [(int(d), overlay(Image.fromarray(grey[d]), heatmap[d], colormap=colormap, alpha=alpha)) for d in indices]


def slice_grid(volume: np.ndarray, heatmap: np.ndarray, *, columns: int | None = None, slices: int | None = None,
               colormap: str = "jet", alpha: float = 0.5, tile: int = 160) -> Image.Image:
    """A grid of ``slices`` evenly spaced axial slices (default: all, up to :data:`GRID_SLICES`), each
    overlaid with its map (see :func:`slice_pictures`), scaled to ``tile`` pixels high, labelled
    "z=<index>", ``columns`` per row (default: a near-square grid), 4 white pixels between."""
    count = GRID_SLICES if slices is None else slices
    pictures = slice_pictures(volume, heatmap, slices=count, colormap=colormap, alpha=alpha)
    columns = math.ceil(math.sqrt(len(pictures))) if columns is None else _positive(columns, "columns")
    columns = min(columns, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    tile = _positive(tile, "tile")
    h, w = pictures[0][1].height, pictures[0][1].width
    width = max(1, round(w * tile / h))
    grid = Image.new("RGB", (columns * (width + 4) - 4, rows * (tile + 4) - 4), "white")
    for slot, (index, picture) in enumerate(pictures):
        picture = picture.resize((width, tile), Image.Resampling.NEAREST if tile >= h else Image.Resampling.BILINEAR)
        ImageDraw.Draw(picture).text((4, 2), f"z={index}", fill="white", stroke_width=2, stroke_fill="black")
        grid.paste(picture, ((slot % columns) * (width + 4), (slot // columns) * (tile + 4)))
    return grid


def _grey(volume: np.ndarray) -> np.ndarray:
    """(D, H, W) uint8 of a (D, H, W) or (C, D, H, W) volume, min-max over the whole volume."""
    volume = np.asarray(volume, dtype=np.float32)
    volume = volume.mean(axis=0) if volume.ndim == 4 else volume
    if volume.ndim != 3 or volume.size == 0:
        raise VisualizeError(f"a volume must be a non-empty (D, H, W) or (C, D, H, W) array, got shape {volume.shape}")
    lo, hi = float(volume.min()), float(volume.max())
    scaled = (volume - lo) / (hi - lo) if hi > lo else np.zeros_like(volume)
    return np.rint(scaled * 255).astype(np.uint8)


def _positive(value: int, name: str) -> int:
    """``value`` as an int >= 1, else an error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VisualizeError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)

"""Volumes (CT, MRI, any 3-D array): read ``.npy`` and NIfTI files, and draw a map slice by slice."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw

from gradcam.errors import ImageError, VisualizeError
from gradcam.render.pictures import overlay


def load_volume(path: str | os.PathLike) -> np.ndarray:
    """A volume as float32 (D, H, W), or (C, D, H, W) with channels: ``.npy``, or NIfTI ``.nii`` /
    ``.nii.gz`` (nibabel, the ``medical`` extra). NIfTI stores (X, Y, Z); it is returned as (Z, Y, X) =
    (D, H, W), so that ``volume[d]`` is the axial slice d."""
    name = os.fspath(path)
    try:
        if name.lower().endswith((".nii", ".nii.gz")):
            data = _nibabel().load(name).get_fdata(dtype=np.float32)
            data = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0) if data.ndim == 4 else data
        else:
            data = np.load(name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot read volume {name}: {exc}") from None
    if data.ndim not in (3, 4) or not np.issubdtype(data.dtype, np.number):
        raise ImageError(f"volume {name} has shape {data.shape} ({data.dtype}); expected (D, H, W) or (C, D, H, W) numbers")
    return np.ascontiguousarray(data, dtype=np.float32)


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise VisualizeError('reading NIfTI files needs nibabel: pip install "gradcam[medical]"') from None
    return nibabel


def slice_pictures(volume: np.ndarray, heatmap: np.ndarray, *, slices: int | None = None, colormap: str = "jet",
                   alpha: float = 0.5) -> list[tuple[int, Image.Image]]:
    """(index, picture) of axial slices overlaid with their map: every slice, or ``slices`` evenly spaced
    ones. The volume (a (C, D, H, W) one: its channels' mean) is scaled to grey over the whole volume,
    so slices compare."""
    grey = _grey(volume)
    if heatmap.shape != grey.shape:
        raise VisualizeError(f"map of shape {heatmap.shape} for a volume of shape {grey.shape} (D, H, W)")
    depth = grey.shape[0]
    indices = range(depth) if slices is None else np.unique(np.rint(np.linspace(0, depth - 1, min(slices, depth))).astype(int))
    return [(int(d), overlay(Image.fromarray(grey[d]), heatmap[d], colormap=colormap, alpha=alpha)) for d in indices]


def slice_grid(volume: np.ndarray, heatmap: np.ndarray, *, slices: int | None = 16, columns: int | None = None,
               colormap: str = "jet", alpha: float = 0.5, tile: int = 160) -> Image.Image:
    """A grid of ``slices`` evenly spaced axial slices (all when None), each overlaid with its map, scaled
    to ``tile`` pixels high and labelled "z=<index>"."""
    pictures = slice_pictures(volume, heatmap, slices=slices, colormap=colormap, alpha=alpha)
    columns = columns or math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
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
    if volume.ndim != 3:
        raise VisualizeError(f"a volume must be (D, H, W) or (C, D, H, W), got shape {volume.shape}")
    lo, hi = float(volume.min()), float(volume.max())
    scaled = (volume - lo) / (hi - lo) if hi > lo else np.zeros_like(volume)
    return np.rint(scaled * 255).astype(np.uint8)

"""Pictures of heatmaps: colour maps, overlays, figures and grids (matplotlib Agg only)."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from PIL import Image

from gradcam.errors import VisualizeError, suggest

PANEL = 4.0  # a figure panel's width, in inches


def get_colormap(colormap: str | Colormap) -> Colormap:
    """A matplotlib colormap by name (or pass one through); unknown names suggest close ones."""
    if isinstance(colormap, Colormap):
        return colormap
    try:
        return matplotlib.colormaps[colormap]
    except KeyError:
        raise VisualizeError(
            f"unknown colormap {colormap!r}.{suggest(str(colormap), list(matplotlib.colormaps))}"
        ) from None


def colorize(heatmap: np.ndarray, colormap: str | Colormap = "jet") -> Image.Image:
    """Map a (H, W) heatmap in [0, 1] through a colormap to an RGB image; an (H, W, 3) map (guided
    methods) is an image already, shown with the usual contrast: (m − mean) / std × 0.1 + 0.5."""
    cmap = get_colormap(colormap)
    hm = _heatmap(heatmap)
    if hm.ndim == 3:
        stretched = np.clip((hm - hm.mean()) / (hm.std() + 1e-12) * 0.1 + 0.5, 0.0, 1.0)
        return Image.fromarray(np.rint(stretched * 255.0).astype(np.uint8))
    if cmap.N > 256:  # more colours than a palette image holds
        return Image.fromarray(np.ascontiguousarray(cmap(hm, bytes=True)[..., :3]))
    index = np.minimum((hm * cmap.N).astype(np.uint16), cmap.N - 1).astype(np.uint8)  # matplotlib's binning
    image = Image.frombuffer("P", (hm.shape[1], hm.shape[0]), np.ascontiguousarray(index), "raw", "P", 0, 1)
    image.putpalette(_lut(cmap).tobytes())  # a palette image: Pillow looks the colours up in C
    return image.convert("RGB")


def _lut(cmap: Colormap) -> np.ndarray:
    """The colormap's N colours as an (N, 3) uint8 table: what ``cmap(x, bytes=True)`` looks up."""
    return np.ascontiguousarray(cmap(np.arange(cmap.N), bytes=True)[:, :3])


def grayscale(heatmap: np.ndarray) -> Image.Image:
    """A (H, W) heatmap in [0, 1] as an "L" image (0..255); (H, W, 3) maps are averaged over colour."""
    hm = _heatmap(heatmap)
    hm = hm.mean(axis=2) if hm.ndim == 3 else hm
    return Image.fromarray(np.rint(hm * 255.0).astype(np.uint8))


def map_overlay(picture: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """Any raw map on ``picture``: min-max normalised (a constant map shows as zero), an input-space map
    (C, H, W) by its absolute sum over channels, brought to the picture's size bilinearly."""
    heatmap = np.asarray(heatmap, np.float32)
    heatmap = np.abs(heatmap).sum(0) if heatmap.ndim == 3 else heatmap
    low, high = float(heatmap.min()), float(heatmap.max())
    heatmap = (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)
    resized = Image.fromarray(heatmap).resize(picture.size, Image.Resampling.BILINEAR)
    return overlay(picture, np.clip(np.asarray(resized), 0.0, 1.0))


def overlay(
    image: Image.Image,
    heatmap: np.ndarray,
    *,
    colormap: str | Colormap = "jet",
    alpha: float = 0.5,
) -> Image.Image:
    """Blend: (1 - alpha) * image + alpha * colorize(heatmap), as RGB uint8."""
    alpha = _alpha(alpha)
    hm = _heatmap(heatmap)
    w, h = image.size
    if hm.shape[:2] != (h, w):
        raise VisualizeError(
            f"heatmap shape {hm.shape[:2]} does not match image shape {(h, w)} (H, W); "
            "resize the heatmap to the image first"
        )
    return Image.blend(image.convert("RGB"), colorize(hm, colormap), alpha)


def figure(
    image: Image.Image,
    heatmap: np.ndarray,
    *,
    title: str,
    colormap: str | Colormap = "jet",
    alpha: float = 0.5,
    dpi: int = 100,
) -> Image.Image:
    """One row: "original", "heatmap" (with colorbar), "overlay"; `title` above."""
    cmap = get_colormap(colormap)
    blended = overlay(image, heatmap, colormap=cmap, alpha=alpha)
    hm = _heatmap(heatmap)
    # Sized to the picture: three panels of PANEL inches wide, as tall as the picture's aspect makes them,
    # and room for the titles; the colour bar is an inset of the heatmap's own axes (its height exactly).
    aspect = image.height / image.width
    fig = Figure(figsize=(3 * PANEL + 0.5, PANEL * aspect + 0.55), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.06)
    axes = fig.subplots(1, 3)
    axes[0].imshow(np.asarray(image.convert("RGB")))
    shown = axes[1].imshow(hm if hm.ndim == 2 else np.asarray(colorize(hm)), cmap=cmap, vmin=0.0, vmax=1.0)
    axes[2].imshow(np.asarray(blended))
    for ax, name in zip(axes, ("original", "heatmap", "overlay")):
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if hm.ndim == 2:
        bar = fig.colorbar(shown, cax=axes[1].inset_axes((1.02, 0.0, 0.035, 1.0)))
        bar.ax.tick_params(labelsize=8)
    fig.suptitle(_fitted(title, 3 * PANEL), fontsize=11)
    return render_figure(fig)


def grid(
    rows: Sequence[Sequence[Image.Image]],
    titles: Sequence[Sequence[str]] | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
    panel_inches: float = 3.0,
) -> Image.Image:
    """A grid of image panels (rows may be ragged), each with an optional title; ``title`` above all."""
    if not rows or not any(rows):
        raise VisualizeError("grid needs at least one row with at least one image")
    if titles is not None and (
        len(titles) != len(rows) or any(len(t) != len(r) for t, r in zip(titles, rows))
    ):
        raise VisualizeError(
            f"titles layout {[len(t) for t in titles]} does not match rows layout {[len(r) for r in rows]}"
        )
    nrows, ncols = len(rows), max(len(r) for r in rows)
    panels = [p for r in rows for p in r if isinstance(p, Image.Image)]
    aspect = float(np.median([p.height / p.width for p in panels])) if panels else 1.0
    title_inches = 0.3 if titles is not None else 0.0  # each row's panel titles
    fig = Figure(figsize=(panel_inches * ncols, nrows * (panel_inches * aspect + title_inches) + (0.4 if title else 0)),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i in range(nrows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_axis_off()
            if j < len(rows[i]):
                panel = rows[i][j]
                if not isinstance(panel, Image.Image):
                    raise VisualizeError(f"grid panel [{i}][{j}] is a {type(panel).__name__}, expected a PIL image")
                ax.imshow(np.asarray(panel.convert("RGB")))
                if titles is not None:
                    ax.set_title(_fitted(titles[i][j], panel_inches, fontsize=9), fontsize=9)
    if title:
        fig.suptitle(_fitted(title, panel_inches * ncols), fontsize=11)
    return render_figure(fig)


def wrapped_grid(panels: Sequence[Image.Image], titles: Sequence[str], *, columns: int = 4,
                 title: str | None = None) -> Image.Image:
    """:func:`grid` of a flat list of panels, ``columns`` per row (the last row may be shorter)."""
    def rows(items):
        return [list(items[i : i + columns]) for i in range(0, len(items), columns)]

    return grid(rows(panels), rows(titles), title=title)


# --------------------------------------------------------------------------- helpers


def render_figure(fig: Figure) -> Image.Image:
    """A matplotlib figure drawn (Agg, no pyplot) as an RGB image."""
    FigureCanvasAgg(fig)
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))


def _fitted(text: str, inches: float, fontsize: float = 11) -> str:
    """``text`` wrapped to lines that fit ``inches`` at ``fontsize`` points (a character is about 0.6 em)."""
    width = max(8, int(inches * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, width)) if len(text) > width else text


def _heatmap(heatmap: np.ndarray) -> np.ndarray:
    hm = np.asarray(heatmap, dtype=np.float32)
    if not (hm.ndim == 2 or (hm.ndim == 3 and hm.shape[2] == 3)) or hm.size == 0:
        raise VisualizeError(f"heatmap must be a non-empty (H, W) or (H, W, 3) array, got shape {hm.shape}")
    return np.clip(np.nan_to_num(hm, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise VisualizeError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:
        raise VisualizeError(f"alpha must be in [0, 1], got {alpha!r}")
    return value


def fit(picture: Image.Image, longest: int) -> Image.Image:
    """The picture, scaled down so that its long side is at most ``longest`` pixels."""
    scale = longest / max(picture.size)
    if scale >= 1:
        return picture
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)

"""1-D signals: each channel drawn as a line whose colour is the map at that time."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from gradcam.errors import VisualizeError
from gradcam.render.pictures import get_colormap, render_figure


def segment_colours(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(L − 1, 4) RGBA colours in [0, 1] of the line's segments: segment i (samples i to i + 1) is
    coloured by the map's mean over those two samples (NaN counts as 0)."""
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if heatmap.ndim != 1 or heatmap.size < 2:
        raise VisualizeError(f"a signal's map must be (L,) with L >= 2, got shape {heatmap.shape}")
    return get_colormap(colormap)(np.clip((heatmap[:-1] + heatmap[1:]) / 2, 0, 1))


def signal_plot(signal: np.ndarray, heatmap: np.ndarray, *, colormap: str = "jet", title: str | None = None,
                channel_names: Sequence[str] | None = None, width: float = 8.0) -> Image.Image:
    """The signal, (L,) or (C, L), one row per channel, each line coloured by the (L,) map in [0, 1]
    (see :func:`segment_colours`), with the map's colour bar; rows named by ``channel_names``."""
    signal = np.atleast_2d(np.asarray(signal, dtype=np.float32))
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if signal.ndim != 2 or heatmap.shape != signal.shape[1:]:
        raise VisualizeError(f"a map of shape {heatmap.shape} for a signal of shape {signal.shape} (C, L)")
    if not np.isfinite(signal).all():
        raise VisualizeError(f"the signal of shape {signal.shape} has NaN or infinite values")
    names = list(channel_names) if channel_names is not None else [f"channel {c}" for c in range(len(signal))]
    if len(names) != len(signal):
        raise VisualizeError(f"{len(names)} channel_names for a signal of {len(signal)} channels")
    colours = segment_colours(heatmap, colormap)
    fig = Figure(figsize=(width, 1.2 + 1.4 * len(signal)), dpi=100)
    axes = fig.subplots(len(signal), 1, sharex=True, squeeze=False)[:, 0]
    time = np.arange(signal.shape[1])
    for ax, values, name in zip(axes, signal, names):
        points = np.stack([time, values], axis=1)
        lines = LineCollection(np.stack([points[:-1], points[1:]], axis=1), colors=colours, linewidths=2,
                               capstyle="round")  # round ends close the seams between segments
        ax.add_collection(lines)
        ax.set_xlim(0, max(1, len(time) - 1))
        pad = 0.05 * (float(values.max() - values.min()) or 1.0)
        ax.set_ylim(float(values.min()) - pad, float(values.max()) + pad)
        ax.set_ylabel(name)
    axes[-1].set_xlabel("time (samples)")
    mappable = fig.colorbar(_scalar_mappable(colormap), ax=list(axes), fraction=0.03)
    mappable.set_label("map")
    if title:
        fig.suptitle(title)
    return render_figure(fig)


def _scalar_mappable(colormap: str):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(norm=Normalize(0, 1), cmap=get_colormap(colormap))

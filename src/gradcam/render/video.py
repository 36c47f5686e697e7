"""Video clips drawn: a map overlaid on every frame, an MP4 written, a strip of key frames. Encoding goes
through PyAV (the ``video`` extra); reading clips is :mod:`gradcam.io.clips`."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gradcam.errors import VisualizeError
from gradcam.io.clips import pyav
from gradcam.render.files import atomic_write
from gradcam.render.pictures import overlay


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 MP4 (libx264, yuv420p), atomically (see
    :func:`~gradcam.render.files.atomic_write`). yuv420p needs an even width and height: an odd one is
    padded by repeating the last row or column, so a 17×33 clip is stored, and read back, as 18×34."""
    av = pyav()
    frames = _frames(frames)
    try:
        rate = Fraction(float(fps)).limit_denominator(1001)  # 29.97 -> 30000/1001
    except (TypeError, ValueError, OverflowError):
        rate = Fraction(0)
    if not 0 < rate <= 1000:
        raise VisualizeError(f"fps must be a number in (0, 1000], got {fps!r}")
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
    frames = np.pad(frames, pad, mode="edge") if any(p[1] for p in pad) else frames

    def encode(fp):
        with av.open(fp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())  # flush the encoder's delayed frames

    return atomic_write(path, encode)


def overlay_frames(frames: np.ndarray, heatmaps: np.ndarray, *, colormap: str = "jet",
                   alpha: float = 0.5) -> np.ndarray:
    """Each frame blended with its map as :func:`~gradcam.render.pictures.overlay` does:
    (1 − alpha) · frame + alpha · colorize(map); (T, H, W, 3) uint8."""
    frames, heatmaps = _frames(frames), np.asarray(heatmaps)
    if heatmaps.shape != frames.shape[:3]:
        raise VisualizeError(f"maps of shape {heatmaps.shape} for frames of shape {frames.shape[:3]} (T, H, W)")
    return np.stack([np.asarray(overlay(Image.fromarray(f), m, colormap=colormap, alpha=alpha))
                     for f, m in zip(frames, heatmaps)])


def key_frames(frames: np.ndarray, heatmaps: np.ndarray, count: int = 6, *, colormap: str = "jet",
               alpha: float = 0.5, height: int = 160) -> Image.Image:
    """A strip of ``count`` evenly spaced overlaid frames (all when fewer), first and last included,
    each ``height`` pixels high, labelled "t=<frame index>", 4 white pixels between."""
    frames, height = _frames(frames), _positive(height, "height")
    indices = np.unique(np.rint(np.linspace(0, len(frames) - 1,
                                            min(_positive(count, "count"), len(frames)))).astype(int))
    heatmaps = np.asarray(heatmaps)
    if heatmaps.shape != frames.shape[:3]:
        raise VisualizeError(f"maps of shape {heatmaps.shape} for frames of shape {frames.shape[:3]} (T, H, W)")
    overlays = overlay_frames(frames[indices], heatmaps[indices], colormap=colormap, alpha=alpha)
    width = max(1, round(frames.shape[2] * height / frames.shape[1]))
    strip = Image.new("RGB", (len(indices) * (width + 4) - 4, height), "white")
    for slot, (index, picture) in enumerate(zip(indices, overlays)):
        tile = Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR)
        ImageDraw.Draw(tile).text((4, 2), f"t={index}", fill="white", stroke_width=2, stroke_fill="black")
        strip.paste(tile, (slot * (width + 4), 0))
    return strip


def _frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` checked: a non-empty (T, H, W, 3) uint8 array."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape or frames.dtype != np.uint8:
        raise VisualizeError(f"frames must be a (T, H, W, 3) uint8 array with T, H, W >= 1, "
                             f"got shape {frames.shape} ({frames.dtype})")
    return frames


def _positive(value: int, name: str) -> int:
    """``value`` as an int >= 1, else an error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VisualizeError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)

"""Video clips: read a video file or a folder of frames, overlay a map on every frame, write an MP4, and
draw a strip of key frames. Decoding and encoding go through PyAV (the ``video`` extra)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gradcam.errors import ImageError, VisualizeError
from gradcam.render.files import atomic_write
from gradcam.render.images import IMAGE_SUFFIXES, load_image
from gradcam.render.pictures import overlay

_MISSING = 'reading and writing video needs PyAV: pip install "gradcam[video]"'


def _av():
    try:
        import av
    except ImportError:
        raise VisualizeError(_MISSING) from None
    return av


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8 RGB, frames per second) of a video file's first video stream; at most
    ``max_frames`` frames, from the start."""
    av = _av()
    limit = None if max_frames is None else _positive(max_frames, "max_frames")
    frames = []
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if limit is not None and len(frames) >= limit:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ImageError(f"cannot read video {os.fspath(path)}: {exc}") from None
    if not frames:
        raise ImageError(f"video {os.fspath(path)} has no frames")
    return np.stack(frames), fps


def read_frames(folder: str | os.PathLike) -> np.ndarray:
    """The images of a folder, sorted by name, as (T, H, W, 3) uint8 frames (all of one size)."""
    if not Path(folder).is_dir():
        raise ImageError(f"{os.fspath(folder)} is not a folder of frames")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no image files in {os.fspath(folder)} to read as frames")
    frames = [np.asarray(load_image(p)) for p in files]
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ImageError(f"the frames in {os.fspath(folder)} differ in size: {sorted(sizes)[:2]}")
    return np.stack(frames)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 MP4 (libx264, yuv420p), atomically (see
    :func:`~gradcam.render.files.atomic_write`). yuv420p needs an even width and height: an odd one is
    padded by repeating the last row or column, so a 17×33 clip is stored, and read back, as 18×34."""
    av = _av()
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

"""Video clips: read a video file or a folder of frames, overlay a map on every frame, write an MP4, and
draw a strip of key frames. Decoding and encoding go through PyAV (the ``video`` extra)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gradcam.errors import ImageError, VisualizeError
from gradcam.render.images import IMAGE_SUFFIXES, load_image
from gradcam.render.pictures import colorize

_MISSING = 'reading and writing video needs PyAV: pip install "gradcam[video]"'


def _av():
    try:
        import av
    except ImportError:
        raise VisualizeError(_MISSING) from None
    return av


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8, frames per second) of a video file; at most ``max_frames`` frames."""
    av = _av()
    frames = []
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ImageError(f"cannot read video {os.fspath(path)}: {exc}") from None
    if not frames:
        raise ImageError(f"video {os.fspath(path)} has no frames")
    return np.stack(frames), fps


def read_frames(folder: str | os.PathLike) -> np.ndarray:
    """The images of a folder, sorted by name, as (T, H, W, 3) uint8 frames (all of one size)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no image files in {os.fspath(folder)} to read as frames")
    frames = [np.asarray(load_image(p)) for p in files]
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ImageError(f"the frames in {os.fspath(folder)} differ in size: {sorted(sizes)[:2]}")
    return np.stack(frames)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as an H.264 MP4 (yuv420p), atomically. H.264 in yuv420p needs an
    even width and height: an odd one is padded by repeating the last row or column."""
    av = _av()
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VisualizeError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got shape {frames.shape}")
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
    frames = np.pad(frames, pad, mode="edge") if any(p[1] for p in pad) else frames
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=_rate(fps))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def overlay_frames(frames: np.ndarray, heatmaps: np.ndarray, *, colormap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Each frame blended with its map: (1 − alpha) · frame + alpha · colorize(map), (T, H, W, 3) uint8."""
    frames, heatmaps = np.asarray(frames), np.asarray(heatmaps)
    if heatmaps.shape != frames.shape[:3]:
        raise VisualizeError(f"maps of shape {heatmaps.shape} for frames of shape {frames.shape[:3]} (T, H, W)")
    return np.stack([np.asarray(Image.blend(Image.fromarray(f), colorize(m, colormap), alpha))
                     for f, m in zip(frames, heatmaps)])


def key_frames(frames: np.ndarray, heatmaps: np.ndarray, count: int = 6, *, colormap: str = "jet",
               alpha: float = 0.5, height: int = 160) -> Image.Image:
    """A strip of ``count`` evenly spaced overlaid frames, each ``height`` pixels high and labelled
    "t=<frame index>"."""
    indices = np.unique(np.rint(np.linspace(0, len(frames) - 1, min(count, len(frames)))).astype(int))
    overlays = overlay_frames(frames[indices], np.asarray(heatmaps)[indices], colormap=colormap, alpha=alpha)
    width = max(1, round(frames.shape[2] * height / frames.shape[1]))
    strip = Image.new("RGB", (len(indices) * (width + 4) - 4, height), "white")
    for slot, (index, picture) in enumerate(zip(indices, overlays)):
        tile = Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR)
        ImageDraw.Draw(tile).text((4, 2), f"t={index}", fill="white", stroke_width=2, stroke_fill="black")
        strip.paste(tile, (slot * (width + 4), 0))
    return strip

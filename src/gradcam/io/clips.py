"""Reading clips: a video file's frames and rate (PyAV, the ``video`` extra), or a folder of frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gradcam.errors import ImageError, VisualizeError
from gradcam.io.images import IMAGE_SUFFIXES, load_image

_MISSING = 'reading and writing video needs PyAV: pip install "gradcam[video]"'


def pyav():
    """The PyAV module, or a VisualizeError that says how to install it."""
    try:
        import av
    except ImportError:
        raise VisualizeError(_MISSING) from None
    return av


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8 RGB, frames per second) of a video file's first video stream; at most
    ``max_frames`` frames, from the start."""
    av = pyav()
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


def _positive(value: int, name: str) -> int:
    """``value`` as an int >= 1, else an error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VisualizeError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)

"""Explanations of what is not a photo: video clips, volumes (CT, MRI) and 1-D signals.

The model decides what an input is: a video model (``load_model("r3d_18")``) takes clips, a network
whose first convolution is a Conv3d takes volumes, a Conv1d network signals. Each explanation holds the
input and its map at the input's own resolution and saves the pictures people look at: an overlay video
and a strip of key frames, a grid of slices and one picture per slice, a plot of the signal coloured by
its map; and the map itself as ``.npy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from gradcam.apps.model_cache import bundle_on_device
from gradcam.apps.result import Explained
from gradcam.engine.layers import first_convolution
from gradcam.engine.methods import create_method
from gradcam.errors import OptionError
from gradcam.io.clips import read_frames, read_video
from gradcam.io.volumes import load_volume
from gradcam.models.bundle import ModelBundle
from gradcam.render import signals as signal_pictures
from gradcam.render import video as video_pictures
from gradcam.render import volumes as volume_pictures
from gradcam.render.files import picture_name, save_array, save_picture

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
ARRAY_SUFFIXES = (".npy", ".nii", ".nii.gz")
KINDS = ("clip", "volume", "signal")


def media_kind(items: Sequence[Any], bundle: ModelBundle) -> str | None:
    """What the command line's inputs are for this model: "clip" (video files, or any input of a video
    model), "volume" or "signal" (``.npy`` / NIfTI arrays for a Conv3d or Conv1d network), or None
    (images). Inputs the model cannot take are an OptionError that says which model would."""
    names = [str(item).lower() for item in items]
    videos = [n for n in names if n.endswith(VIDEO_SUFFIXES)]
    arrays = [n for n in names if n.endswith(ARRAY_SUFFIXES)]
    if bundle.takes_clips:
        if arrays:
            raise OptionError(f"{arrays[0]}: {bundle.name} is a video model; give it video files or folders of frames")
        return "clip"
    if videos:
        raise OptionError(f"{videos[0]} is a video: explain it with a video model such as --model r3d_18")
    if not arrays:
        return None
    first = first_convolution(bundle.module)
    axes = len(first.kernel_size) if first is not None else 0
    if len(arrays) != len(names) or axes not in (1, 3):
        raise OptionError(f"{arrays[0]}: arrays are volumes for a Conv3d network or signals for a Conv1d one "
                          f"(e.g. --model my_models.py:Net3D --weights net.pth); {bundle.name} takes "
                          + ("images" if axes == 2 else "something else") + ", and images and arrays are not mixed")
    return "volume" if axes == 3 else "signal"


@dataclass
class MediaExplanation(Explained):
    """One clip's, volume's or signal's explanation, at the input's resolution.

    clip:   ``data`` (T, H, W, 3) uint8 frames, ``heatmap`` (T, H, W), ``fps``;
    volume: ``data`` (D, H, W) or (C, D, H, W), ``heatmap`` (D, H, W);
    signal: ``data`` (L,) or (C, L), ``heatmap`` (L,).
    """

    kind: str
    data: np.ndarray
    heatmap: np.ndarray
    class_index: int
    label: str
    probability: float
    fps: float = 25.0

    def save(self, out: str | os.PathLike, format: str = "png") -> dict[str, Path]:
        """Write the pictures and the map under ``out``: clip → ``overlay.mp4`` and ``frames`` (key
        frames); volume → ``slices`` (a grid) and one ``slice<z>`` picture per slice; signal →
        ``signal``; always ``map.npy``. Returns {kind: path}."""
        out = Path(out)
        name = lambda kind, suffix=f".{format}": out / picture_name(self.name, self.method, kind, suffix=suffix)  # noqa: E731
        written = {"map": save_array(self.heatmap, name("map", ".npy"))}
        if self.kind == "clip":
            frames = video_pictures.overlay_frames(self.data, self.heatmap, colormap=self.colormap, alpha=self.alpha)
            written["overlay"] = video_pictures.write_video(frames, name("overlay", ".mp4"), fps=self.fps)
            strip = video_pictures.key_frames(self.data, self.heatmap, colormap=self.colormap, alpha=self.alpha)
            written["frames"] = save_picture(strip, name("frames"))
        elif self.kind == "volume":
            grid = volume_pictures.slice_grid(self.data, self.heatmap, colormap=self.colormap, alpha=self.alpha)
            written["slices"] = save_picture(grid, name("slices"))
            for index, picture in volume_pictures.slice_pictures(self.data, self.heatmap, colormap=self.colormap,
                                                                 alpha=self.alpha):
                written[f"slice{index}"] = save_picture(picture, name(f"slice{index}"))
        else:
            plot = signal_pictures.signal_plot(self.data, self.heatmap, colormap=self.colormap, title=self.title)
            written["signal"] = save_picture(plot, name("signal"))
        return written


def explain_clip(clip: Any, *, model: str | ModelBundle = "r3d_18", **options: Any) -> MediaExplanation:
    """Explain a video: a file (``.mp4``, ``.avi``, … via PyAV, the ``video`` extra), a folder of frames
    (sorted by name) or (T, H, W, 3) uint8 frames, with a video model (its clip: frames evenly spaced
    over the whole video). The map covers every frame: its time axis is interpolated linearly
    between the sampled frames. ``options``: see :func:`explain_array`."""
    fps = 25.0
    name = options.pop("name", None)
    if isinstance(clip, (str, os.PathLike)):
        path = Path(clip)
        name = name or path.name
        if path.is_dir():
            frames = read_frames(path)
        else:
            frames, fps = read_video(path)
    else:
        frames = np.asarray(clip)
    bundle, device = bundle_on_device(model, options.pop("weights", None), options.pop("device", None))
    if not bundle.takes_clips:
        raise OptionError(f"model {bundle.name!r} takes images, not video clips; use a video model such as r3d_18")
    x = bundle.preprocess.batch([frames])
    result = explain_array(x, model=bundle, device=device, size=frames.shape[:3], kind="clip", name=name, **options)
    result.data, result.fps = frames, float(fps)
    return result


def explain_volume(volume: Any, *, model: nn.Module | ModelBundle, **options: Any) -> MediaExplanation:
    """Explain a volume: ``.npy`` or NIfTI (``.nii``/``.nii.gz`` via nibabel, the ``medical`` extra) or
    an array (D, H, W) / (C, D, H, W), with a model whose first convolution is a Conv3d. The values go
    to the model as they are (normalise them as the model was trained). ``options``: :func:`explain_array`."""
    data, name = _array(volume, load_volume, options)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    x = x[None, None] if x.dim() == 3 else x[None]
    return explain_array(x, model=model, size=x.shape[2:], kind="volume", name=name, data=data, **options)


def explain_signal(signal: Any, *, model: nn.Module | ModelBundle, **options: Any) -> MediaExplanation:
    """Explain a 1-D signal: ``.npy`` or an array (L,) / (C, L), with a model whose first convolution is
    a Conv1d; the values go to the model as they are. ``options``: :func:`explain_array`."""
    data, name = _array(signal, np.load, options)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    x = x[None, None] if x.dim() == 1 else x[None]
    return explain_array(x, model=model, size=x.shape[2:], kind="signal", name=name, data=data, **options)


def explain_array(
    x: torch.Tensor,
    *,
    model: Any,
    kind: str,
    size: tuple,
    method: str = "gradcam",
    layer: Any = None,
    target: Any = None,
    name: str | None = None,
    data: np.ndarray | None = None,
    weights: Any = None,
    device: Any = None,
    colormap: str = "jet",
    alpha: float = 0.5,
    **method_options: Any,
) -> MediaExplanation:
    """One input (1, C, *spatial) explained by ``method`` (class ``target``, default the predicted one)
    at ``layer`` (default automatic); the map brought to ``size`` (the clip's (T, H, W), the volume's or
    signal's own size) and min-max normalised."""
    if kind not in KINDS:
        raise OptionError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    bundle, device = bundle_on_device(model, weights, device)
    first = first_convolution(bundle.module)
    axes = {"clip": 3, "volume": 3, "signal": 1}[kind]
    if first is not None and len(first.kernel_size) != axes:
        raise OptionError(f"a {kind} needs a model whose first convolution is Conv{axes}d; "
                          f"{bundle.name} starts with {type(first).__name__}")
    cam = create_method(method, bundle.module, layer, labels=bundle.labels, **method_options)
    if cam.output_kind != "heatmap":
        raise OptionError(f"{method} gives input-space pictures, not heatmaps; use a CAM method for a {kind}")
    out = cam(x.to(device), targets=target, normalize="none")
    heatmap = cam.finish([raw[:1] for raw in out.raws], size, "minmax")[0]
    index = int(out.targets[0])
    return MediaExplanation(
        kind=kind, data=data if data is not None else x[0].numpy(), heatmap=heatmap.cpu().numpy().astype(np.float32),
        class_index=index, label=bundle.label(index), probability=float(out.probabilities[0]),
        layer=",".join(out.layers), method=method, model=bundle.name, name=name or kind,
        colormap=colormap, alpha=alpha)


def _array(source: Any, load, options: dict) -> tuple[np.ndarray, str]:
    """(array, name) of a file or an array given to explain_volume / explain_signal."""
    name = options.pop("name", None)
    if isinstance(source, (str, os.PathLike)):
        return load(source), name or Path(source).name
    return np.asarray(source), name or "input"

"""A model as the applications use it (module, preprocessing, class names, name), and the image → tensor
and clip → tensor preprocessing: resize the whole image or frame (no crop), scale to [0, 1], normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from gradcam.errors import OptionError

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the WHOLE image to ``size``×``size`` (no crop, so a heatmap covers every pixel)
    and normalise with ``mean``/``std``."""

    size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise OptionError(
                f"unknown interpolation {self.interpolation!r}; choose from {', '.join(_RESAMPLE)}"
            )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A PIL image → float32 tensor of shape (3, size, size)."""
        image = image.convert("RGB").resize((self.size, self.size), _RESAMPLE[self.interpolation])
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return ((x - mean) / std).contiguous()

    def batch(self, images: list) -> torch.Tensor:
        """A list of PIL images → float32 tensor of shape (B, 3, size, size)."""
        return torch.stack([self(im) for im in images])


@dataclass(frozen=True)
class ClipPreprocess:
    """A video clip (T, H, W, 3) uint8 → float32 (3, frames, size, size), as torchvision's video models
    take it: ``frames`` frames evenly spaced over the WHOLE clip (so the map's time axis covers every
    frame), each resized whole to ``size``×``size`` (no crop), scaled to [0, 1] and normalised."""

    frames: int = 16
    size: int = 112
    mean: tuple = (0.43216, 0.394666, 0.37645)
    std: tuple = (0.22803, 0.22145, 0.216989)
    interpolation: str = "bilinear"

    def indices(self, count: int) -> np.ndarray:
        """Which of ``count`` frames the clip is made of (repeats when the video is shorter)."""
        if count < 1:
            raise OptionError("a video with no frames cannot be explained")
        return np.rint(np.linspace(0, count - 1, self.frames)).astype(int)

    def __call__(self, clip: np.ndarray) -> torch.Tensor:
        clip = np.asarray(clip)
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise OptionError(f"a clip must be (T, H, W, 3) frames, got shape {clip.shape}")
        frames = [Image.fromarray(clip[i]).resize((self.size, self.size), _RESAMPLE[self.interpolation])
                  for i in self.indices(len(clip))]
        x = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in frames]) / 255.0)  # T, H, W, 3
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        return ((x - mean) / std).permute(3, 0, 1, 2).contiguous()

    def batch(self, clips: list) -> torch.Tensor:
        """A list of clips → float32 tensor of shape (B, 3, frames, size, size)."""
        return torch.stack([self(clip) for clip in clips])


@dataclass
class ModelBundle:
    """A model in eval mode, how to preprocess its input, its class names (or None) and its name."""

    module: nn.Module
    preprocess: Preprocess | ClipPreprocess
    labels: list[str] | None
    name: str

    def label(self, index: int) -> str:
        """The class name of ``index``, or ``class <index>`` when the model has none for it."""
        labels = self.labels
        return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"

    @property
    def takes_clips(self) -> bool:
        """Whether the model explains video clips (B, 3, T, H, W) rather than images."""
        return isinstance(self.preprocess, ClipPreprocess)

    def probe(self) -> torch.Tensor:
        """A grey image (or clip) of the model's input size, preprocessed, on the model's device (for
        layer probes)."""
        size = self.preprocess.size
        if self.takes_clips:
            x = self.preprocess.batch([np.full((self.preprocess.frames, size, size, 3), 128, np.uint8)])
        else:
            x = self.preprocess.batch([Image.new("RGB", (size, size), (128, 128, 128))])
        param = next(self.module.parameters(), None)
        return x if param is None else x.to(param.device)

"""Image → model input and clip → model input: resize the whole image or frame (no crop), scale to [0, 1],
normalise. The numbers are computed with numpy (:meth:`Preprocess.array`), so a process that only decodes
images (a Ray Data task) never imports torch; calling a preprocessing gives the tensor a model takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from gradcam.errors import OptionError

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _check(interpolation: str) -> None:
    if interpolation not in RESAMPLE:
        raise OptionError(f"unknown interpolation {interpolation!r}; choose from {', '.join(RESAMPLE)}")


def _normalised(pixels: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    """uint8 pixels (..., 3) → float32 ``(pixels / 255 - mean) / std``, every step in float32."""
    x = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


class _ToTensor:
    """The tensor half of a preprocessing whose :meth:`array` computes the numbers: torch is imported on the
    first call, not with the module."""

    def __post_init__(self) -> None:
        _check(self.interpolation)

    def __call__(self, item):
        """One image (or clip) → its float32 tensor, :meth:`array`'s values."""
        import torch

        return torch.from_numpy(self.array(item))

    def batch(self, items: list):
        """A list of images (or clips) → their tensors stacked: (B, 3, size, size) or (B, 3, frames, size, size)."""
        import torch

        return torch.stack([self(item) for item in items])


@dataclass(frozen=True)
class Preprocess(_ToTensor):
    """Resize the WHOLE image to ``size``×``size`` (no crop, so a heatmap covers every pixel)
    and normalise with ``mean``/``std``."""

    size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"

    def array(self, image: Image.Image) -> np.ndarray:
        """A PIL image → float32 array of shape (3, size, size)."""
        image = image.convert("RGB").resize((self.size, self.size), RESAMPLE[self.interpolation])
        return np.ascontiguousarray(_normalised(np.asarray(image), self.mean, self.std).transpose(2, 0, 1))


@dataclass(frozen=True)
class ClipPreprocess(_ToTensor):
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

    def array(self, clip: np.ndarray) -> np.ndarray:
        """A clip (T, H, W, 3) uint8 → float32 array of shape (3, frames, size, size)."""
        clip = np.asarray(clip)
        if clip.ndim != 4 or clip.shape[-1] != 3:
            raise OptionError(f"a clip must be (T, H, W, 3) frames, got shape {clip.shape}")
        frames = [np.asarray(Image.fromarray(clip[i]).resize((self.size, self.size), RESAMPLE[self.interpolation]))
                  for i in self.indices(len(clip))]
        return np.ascontiguousarray(_normalised(np.stack(frames), self.mean, self.std).transpose(3, 0, 1, 2))

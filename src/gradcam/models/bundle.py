"""A model as the applications use it (module, preprocessing, class names, name), and the image → tensor
preprocessing: resize the whole image (no crop), scale to [0, 1], normalise."""

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


@dataclass
class ModelBundle:
    """A model in eval mode, how to preprocess its input, its class names (or None) and its name."""

    module: nn.Module
    preprocess: Preprocess
    labels: list[str] | None
    name: str

    def label(self, index: int) -> str:
        """The class name of ``index``, or ``class <index>`` when the model has none for it."""
        labels = self.labels
        return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"

    def probe(self) -> torch.Tensor:
        """A grey image of the model's input size, preprocessed, on the model's device (for layer probes)."""
        from PIL import Image

        size = self.preprocess.size
        x = self.preprocess.batch([Image.new("RGB", (size, size), (128, 128, 128))])
        param = next(self.module.parameters(), None)
        return x if param is None else x.to(param.device)

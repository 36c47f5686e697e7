"""A model as the applications use it: its module, its preprocessing (:mod:`.preprocess`), its class names
and its name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from gradcam.models.preprocess import ClipPreprocess, Preprocess

__all__ = ["ClipPreprocess", "ModelBundle", "Preprocess"]


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

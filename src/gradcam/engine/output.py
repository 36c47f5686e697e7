"""What a call gives back (:class:`CAMOutput`) and what one forward pass leaves (:class:`Pass`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class CAMOutput:
    """Result of one call.

    maps:    float32 (B, H, W) at the input's resolution, normalised per image
             ((B, k, H, W) with ``top_k=k``; (B, 3, H, W) for the guided methods).
    raw:     (B, h, w) un-normalised map at the layer's resolution (a tuple, one per layer, when
             several layers are explained); ``raws`` is always the tuple, one per layer.
    targets: LongTensor (B,) classes explained ((B, k) with top_k; -1 for a callable target).
    logits:  (B, num_classes) scores of the same forward pass.
    layers:  names of the target layers.
    objects: the target of each of the k maps when a target set chose them (``Detections``: one
             ``Box`` per object), else None.
    """

    maps: torch.Tensor
    raw: Any
    targets: torch.Tensor
    logits: torch.Tensor
    layers: list[str]
    objects: list | None = None

    @property
    def raws(self) -> tuple[torch.Tensor, ...]:
        """The un-normalised maps, one per target layer, whatever their number (``raw`` keeps the
        single-layer tensor for one layer)."""
        return self.raw if isinstance(self.raw, tuple) else (self.raw,)

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax probability of each explained class (same shape as ``targets``)."""
        probs = self.logits.float().softmax(dim=-1)
        index = self.targets.clamp_min(0)
        picked = probs.gather(1, index if index.dim() == 2 else index[:, None])
        picked = picked if index.dim() == 2 else picked[:, 0]
        return torch.where(self.targets >= 0, picked, torch.full_like(picked, float("nan")))


@dataclass
class Pass:
    """What one forward pass left: the input, the model's output and the target layers' activations."""

    x: torch.Tensor
    output: Any
    activations: list[torch.Tensor]
    extra: dict = field(default_factory=dict)

"""LayerCAM (Jiang, Zhang, Hou, Cheng & Wei, IEEE TIP 2021)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method


@register_method("layercam")
class LayerCAM(CAMMethod):
    """LayerCAM: positive gradients as per-pixel weights; fine maps from earlier layers too.

    L^c = ReLU(Σ_k ReLU(∂y^c/∂A^k) ⊙ A^k).
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return Fn.relu((grads.clamp_min(0) * activations).sum(dim=1))

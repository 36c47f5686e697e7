"""HiResCAM (Draelos & Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations")."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method


@register_method("hirescam")
class HiResCAM(CAMMethod):
    """HiResCAM: gradients times activations element-wise, no averaging (faithful to the model).

    L^c = ReLU(Σ_k ∂y^c/∂A^k ⊙ A^k).
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return Fn.relu((grads * activations).sum(dim=1))

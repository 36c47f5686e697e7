"""XGrad-CAM (Fu, Hu, Liu, Zhang & Xie, BMVC 2020, "Axiom-based Grad-CAM")."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method


@register_method("xgradcam")
class XGradCAM(CAMMethod):
    """XGrad-CAM: gradients weighted by the normalised activations (sensitivity and conservation).

    w_k = Σ_ij (A_ij^k / Σ_ab A_ab^k) ∂y^c/∂A_ij^k  (0 for a channel with Σ A^k = 0),
    L^c = ReLU(Σ_k w_k A^k).
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        axes = Fn.spatial_axes(activations)
        total = activations.sum(dim=axes)
        weighted = (activations * grads).sum(dim=axes)
        weights = torch.where(total != 0, weighted / torch.where(total != 0, total, 1), 0)
        return Fn.relu(Fn.weighted_sum(weights, activations))

"""Grad-CAM (Selvaraju et al., ICCV 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization")."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method


@register_method("gradcam")
class GradCAM(CAMMethod):
    """Grad-CAM: channel weights are the spatial mean of the class score's gradients.

    L^c = ReLU(Σ_k α_k^c A^k), α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij (Selvaraju et al., ICCV 2017, eq. 1-2).
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return Fn.relu(Fn.weighted_sum(Fn.gap_weights(grads), activations))

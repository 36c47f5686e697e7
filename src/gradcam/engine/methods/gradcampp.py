"""Grad-CAM++ (Chattopadhay, Sarkar, Howlader & Balasubramanian, WACV 2018)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method


@register_method("gradcam++")
class GradCAMPlusPlus(CAMMethod):
    """Grad-CAM++: pixel-weighted gradients, better when a class appears several times.

    With Y^c = exp(S^c) the higher derivatives have a closed form (g = ∂S^c/∂A, eq. 19):
    α_ij^k = g_ij² / (2 g_ij² + Σ_ab A_ab^k g_ij³)  (0 where the denominator is 0),
    w_k = Σ_ij α_ij^k ReLU(g_ij),  L^c = ReLU(Σ_k w_k A^k).
    The paper's weights carry the factor exp(S^c) > 0 of ∂Y^c/∂A; it is the same for every pixel
    of a sample, so it is left out (it overflows float32 for S^c > 88 and vanishes on normalising).
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2, g3 = grads.pow(2), grads.pow(3)
        denominator = 2 * g2 + activations.sum(dim=Fn.spatial_axes(activations), keepdim=True) * g3
        alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1), 0)
        weights = (alpha * grads.clamp_min(0)).sum(dim=Fn.spatial_axes(grads))
        return Fn.relu(Fn.weighted_sum(weights, activations))

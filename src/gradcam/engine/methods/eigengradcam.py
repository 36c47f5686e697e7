"""Eigen-Grad-CAM (pytorch-grad-cam's variant of Eigen-CAM, Muhammad & Yeasin, IJCNN 2020, weighted by the
gradients)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.eigencam import principal_projection
from gradcam.engine.methods.registry import register_method


@register_method("eigengradcam")
class EigenGradCAM(CAMMethod):
    """Eigen-Grad-CAM: the first principal component of the gradient-weighted activations A ⊙ ∂y^c/∂A.

    M = (A ⊙ ∂y^c/∂A) reshaped to (h·w, K), each channel centred over the positions; M = U Σ Vᵀ;
    L^c = ReLU(M v₁). Eigen-CAM (Muhammad & Yeasin, IJCNN 2020) on HiResCAM's products instead of the
    bare activations, as pytorch-grad-cam's ``EigenGradCAM`` defines it. An SVD's sign is arbitrary (the
    reference keeps whichever LAPACK gives): v₁'s sign is chosen so that L correlates positively with
    Σ_k A^k ⊙ ∂y^c/∂A^k, HiResCAM's map before its ReLU.
    """

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return Fn.relu(principal_projection(activations * grads))

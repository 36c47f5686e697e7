"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target


@register_method("eigencam")
class EigenCAM(CAMMethod):
    """Eigen-CAM: the first principal component of the activations; no class, no gradient.

    M = A reshaped to (h·w, K), each channel centred over the positions; M = U Σ Vᵀ;
    L = ReLU(M v₁), with v₁'s sign chosen so that L correlates positively with Σ_k A^k (an SVD's
    sign is arbitrary). The same map is returned for every target.
    """

    uses_gradients = False
    shares_pass = True
    class_free = True

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        maps = [Fn.relu(principal_projection(self.as_map(acts, i).float())) for i, acts in enumerate(run.activations)]
        return [maps for _ in targets]


def principal_projection(activations: torch.Tensor) -> torch.Tensor:
    """(B, K, *spatial) -> (B, *spatial): the centred activations projected on their first right singular vector."""
    b, k = activations.shape[:2]
    matrix = activations.reshape(b, k, -1).transpose(1, 2)  # (B, positions, K)
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = torch.einsum("bpk,bk->bp", centred, vh[:, 0])
    total = matrix.sum(dim=2)
    sign = torch.sign(((projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign[:, None]).reshape(b, *activations.shape[2:])

"""FEM, the Feature Explanation Method (Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, IPTA 2020,
"Features understanding in 3D CNNs for actions recognition in video", hal-02963298)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import OptionError


@register_method("fem")
class FEM(CAMMethod):
    """FEM: each channel's outstanding responses (k-sigma rule), weighted by the channel's mean; no gradient.

    μ_k, σ_k = mean and (population) standard deviation of A^k over the positions; the binary map
    B^k = 1[A^k > μ_k + k σ_k]; L = ReLU(Σ_k μ_k B^k) (``k=2`` by default). No class, no gradient: the
    same map for every target. pytorch-grad-cam's ``FEM`` departs from the paper: it weights the
    activations A^k, not the binary maps, by the fraction of the positions above the threshold,
    Σ_k mean(B^k) A^k. Both are the same where every channel takes one value on a few positions and 0
    elsewhere. A constant channel (σ_k = 0) has no outstanding response: its B^k is all 0.
    """

    uses_gradients = False
    shares_pass = True
    class_free = True

    def __init__(self, model, target_layer=None, *, k: float = 2.0, **options):
        super().__init__(model, target_layer, **options)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k == k or k < 0:
            raise OptionError(f"k (the k-sigma rule's number of standard deviations) must be a number >= 0, got {k!r}")
        self.k = float(k)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        maps = [feature_explanation(self.as_map(acts, i).float(), self.k) for i, acts in enumerate(run.activations)]
        return [maps for _ in targets]


def feature_explanation(activations: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """(B, K, *spatial) -> (B, *spatial): ReLU(Σ_k μ_k 1[A^k > μ_k + k σ_k])."""
    axes = Fn.spatial_axes(activations)
    std, mean = torch.std_mean(activations, dim=axes, correction=0, keepdim=True)
    outstanding = (activations > mean + k * std).to(activations.dtype)
    return Fn.relu((outstanding * mean).sum(dim=1))

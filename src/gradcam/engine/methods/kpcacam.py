"""KPCA-CAM (Karmani, Cohen & Shalaby, 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision
Models using Kernel PCA", arXiv 2410.00267)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import OptionError

KERNELS = ("sigmoid", "rbf", "poly", "cosine", "linear")


@register_method("kpcacam")
class KPCACAM(CAMMethod):
    """KPCA-CAM: the first kernel principal component of the activations; no class, no gradient.

    X = A reshaped to (n = h·w positions, K), each channel centred over the positions; the kernel
    matrix K_ij = κ(x_i, x_j) (``kernel``: "sigmoid" tanh(γ xᵢ·xⱼ + c₀), the default as in the paper's
    code and pytorch-grad-cam; "rbf" exp(−γ‖xᵢ − xⱼ‖²); "poly" (γ xᵢ·xⱼ + c₀)^d; "cosine"; "linear",
    which is Eigen-CAM); γ = ``gamma`` or 1/K, c₀ = ``coef0`` = 1, d = ``degree`` = 3, as scikit-learn's
    KernelPCA; K̃ = (I − 1/n) K (I − 1/n) the kernel centred in feature space; K̃ u₁ = λ₁ u₁ its leading
    eigenvector; L = ReLU(√λ₁ u₁), the positions' coordinates on the first component. An
    eigenvector's sign is arbitrary (pytorch-grad-cam takes scikit-learn's: the entry of largest
    magnitude positive): u₁'s sign is chosen so that L correlates positively with Σ_k A^k, as Eigen-CAM's.
    The same map for every target. Costs O(n³) per sample in the positions n (a 56×56 map: n = 3,136).
    """

    uses_gradients = False
    shares_pass = True
    class_free = True

    def __init__(self, model, target_layer=None, *, kernel: str = "sigmoid", gamma: float | None = None,
                 coef0: float = 1.0, degree: int = 3, **options):
        super().__init__(model, target_layer, **options)
        if kernel not in KERNELS:
            raise OptionError(f"kernel={kernel!r} is not one of {', '.join(KERNELS)}")
        if gamma is not None and not float(gamma) > 0:
            raise OptionError(f"gamma must be > 0 (or None: 1 / channels), got {gamma!r}")
        if int(degree) < 1:
            raise OptionError(f"degree must be >= 1, got {degree!r}")
        self.kernel, self.gamma = kernel, None if gamma is None else float(gamma)
        self.coef0, self.degree = float(coef0), int(degree)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        maps = [Fn.relu(kernel_principal_projection(self.as_map(acts, i).float(), self.kernel, self.gamma,
                                                    self.coef0, self.degree))
                for i, acts in enumerate(run.activations)]
        return [maps for _ in targets]


def kernel_matrix(x: torch.Tensor, kernel: str, gamma: float, coef0: float = 1.0, degree: int = 3) -> torch.Tensor:
    """(B, n, K) points -> (B, n, n) kernel matrices."""
    if kernel == "rbf":
        return torch.exp(-gamma * torch.cdist(x, x).square())
    if kernel == "cosine":
        unit = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        return unit @ unit.transpose(1, 2)
    dot = x @ x.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + coef0)
    if kernel == "poly":
        return (gamma * dot + coef0).pow(degree)
    return dot  # linear


def kernel_principal_projection(activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None,
                                coef0: float = 1.0, degree: int = 3) -> torch.Tensor:
    """(B, K, *spatial) -> (B, *spatial): each position's coordinate on the first kernel principal component
    of the positions' centred activation vectors, oriented along Σ_k A^k (computed in float64)."""
    b, k = activations.shape[:2]
    points = activations.reshape(b, k, -1).transpose(1, 2).double()  # (B, n, K)
    points = points - points.mean(dim=1, keepdim=True)
    gram = kernel_matrix(points, kernel, 1.0 / k if gamma is None else gamma, coef0, degree)
    gram = gram - gram.mean(dim=1, keepdim=True) - gram.mean(dim=2, keepdim=True) + gram.mean(dim=(1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(gram)  # ascending
    projection = vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()  # (B, n)
    total = activations.reshape(b, k, -1).sum(dim=1).double()
    sign = torch.sign(((projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign[:, None]).to(activations.dtype).reshape(b, *activations.shape[2:])

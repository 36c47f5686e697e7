"""Pure tensor maths of class activation maps; every function works on a whole batch at once and on
any number of spatial axes: (B, K, L) signals, (B, K, h, w) images, (B, K, d, h, w) volumes and clips."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from gradcam.choices import NORMALIZATIONS
from gradcam.errors import OptionError

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def spatial_axes(tensor: torch.Tensor) -> tuple[int, ...]:
    """The spatial axes of a (B, K, *spatial) tensor: (2,) for a signal, (2, 3) for an image, (2, 3, 4)
    for a volume."""
    return tuple(range(2, tensor.dim()))


def gap_weights(grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij: (B, K, *spatial) -> (B, K)."""
    return grads.mean(dim=spatial_axes(grads))


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Σ_k α_k A^k: weights (B, K) and activations (B, K, *spatial) -> (B, *spatial)."""
    return torch.einsum("bk,bk...->b...", weights, activations)


def relu(cam: torch.Tensor) -> torch.Tensor:
    """Keep the features with a positive influence on the class (Selvaraju et al., eq. 2)."""
    return cam.clamp_min(0)


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear, bilinear or trilinear resize (align_corners=False) of (B, *spatial) maps to (B, *size),
    or of (B, C, *spatial) to (B, C, *size), by the number of axes in ``size``."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[-len(size):]) == size:
        return maps
    mode = _MODES[len(size)]
    if maps.dim() == len(size) + 2:
        return F.interpolate(maps, size=size, mode=mode, align_corners=False)
    return F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False).squeeze(1)


def normalize(maps: torch.Tensor, mode: str = "minmax", eps: float = 1e-12) -> torch.Tensor:
    """Per-sample scaling of (B, ...) maps: "minmax" -> (m - min)/(max - min), "max" -> m/max, "none".

    A constant map (max == min, e.g. all zero after ReLU) becomes all zeros, never NaN.
    """
    check_normalize(mode)
    if mode == "none":
        return maps
    flat = maps.flatten(1)
    shape = (-1,) + (1,) * (maps.dim() - 1)
    hi = flat.amax(dim=1).view(shape)
    lo = flat.amin(dim=1).view(shape) if mode == "minmax" else torch.zeros_like(hi)
    span = hi - lo
    scaled = (maps - lo) / span.clamp_min(eps)
    return torch.where(span > eps, scaled, torch.zeros_like(scaled))


def check_normalize(mode: str) -> None:
    if mode not in NORMALIZATIONS:
        raise OptionError(f"normalize={mode!r} is not one of {', '.join(NORMALIZATIONS)}")


def fuse(raw_maps: Sequence[torch.Tensor], size: Sequence[int], mode: str = "minmax") -> torch.Tensor:
    """Maps at the input resolution from one or more layers' raw maps (B, *spatial_l).

    One layer: upsample then normalise. Several layers: each is upsampled and normalised, the
    results are averaged, and the average is normalised again (so no layer dominates by scale).
    """
    if len(raw_maps) == 1:
        return normalize(upsample(raw_maps[0].float(), size), mode)
    stacked = torch.stack([normalize(upsample(m.float(), size), mode) for m in raw_maps])
    return normalize(stacked.mean(dim=0), mode)

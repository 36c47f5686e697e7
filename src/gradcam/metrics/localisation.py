"""Localisation: does a map lie on the object that the label names? Per sample, from maps and masks.

The maps (B, *spatial) are brought to the masks' size bilinearly (``align_corners=False``) when they
differ; the masks are boolean (B, *spatial), True on the object.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradcam.engine import functional as Fn
from gradcam.errors import OptionError


def _aligned(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.as_tensor(masks)
    maps = torch.as_tensor(maps, device=masks.device).float()
    if maps.shape[0] != masks.shape[0] or maps.dim() != masks.dim():
        raise OptionError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)}: one map and one mask per "
                          "sample, with the same number of axes")
    if masks.dtype != torch.bool:
        raise OptionError(f"masks must be boolean (True on the object), got {masks.dtype}")
    if maps.shape[1:] != masks.shape[1:]:
        maps = Fn.upsample(maps, masks.shape[1:])
    return maps, masks


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 0) -> torch.Tensor:
    """(B,) bool: the map's peak lies on the object (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, ECCV
    2016), or within ``tolerance`` pixels of the masks' grid of it (Euclidean; the paper and TorchRay use
    15 px at 224 px). Ties at the peak: a hit if any of them is. Constant maps point nowhere (False)."""
    maps, masks = _aligned(maps, masks)
    if tolerance < 0:
        raise OptionError(f"tolerance must be >= 0 pixels, got {tolerance}")
    masks = dilate(masks, tolerance) if tolerance > 0 else masks
    flat, inside = maps.flatten(1), masks.flatten(1)
    peak = flat.amax(dim=1, keepdim=True)
    constant = flat.amin(dim=1) == peak[:, 0]
    return ((flat == peak) & inside).any(dim=1) & ~constant


def energy_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) the share of the map's positive energy that lies on the object, Σ_mask max(L, 0) / Σ max(L, 0)
    (the energy-based pointing game of Score-CAM, Wang et al. 2020); NaN for a map with no positive value."""
    maps, masks = _aligned(maps, masks)
    positive = maps.clamp_min(0).flatten(1)
    total = positive.sum(dim=1)
    return torch.where(total > 0, (positive * masks.flatten(1)).sum(dim=1) / total, torch.nan)


def dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, *spatial) bool masks grown by a ball of ``radius`` pixels: True within that distance of the
    object (1 to 3 spatial axes)."""
    dims = masks.dim() - 1
    if dims not in (1, 2, 3):
        raise OptionError(f"masks of 1 to 3 spatial axes can be dilated, got {tuple(masks.shape)}")
    r = int(radius)
    grid = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1, dtype=torch.float32)] * dims, indexing="ij"))
    ball = ((grid**2).sum(0) <= radius**2).float()
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return conv(masks[:, None].float(), ball[None, None].to(masks.device), padding=r)[:, 0] > 0.5

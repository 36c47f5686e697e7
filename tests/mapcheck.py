"""Comparisons of maps that survive a new BLAS, kernel or library release.

Float32 rounding changes from one release to the next; what must not change is a map relative to its own
scale. So un-normalised maps are compared relative to each map's maximum, and a min-max normalised map,
which amplifies rounding by max / (max − min), gets a tolerance scaled by that factor.
"""

from __future__ import annotations

import torch


def minmax(maps: torch.Tensor) -> torch.Tensor:
    lo, hi = maps.amin(dim=(-2, -1), keepdim=True), maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo)


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per map: max |ours − ref| / max |ref| (maps are the last two axes)."""
    ours, ref = ours.detach().double(), ref.detach().double()
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = ref.abs().amax(dim=(-2, -1)).clamp_min(1e-30)
    return (ours - ref).abs().amax(dim=(-2, -1)) / scale


def assert_relative_close(ours: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    """Un-normalised maps equal up to ``tol`` times each reference map's maximum."""
    error = relative_error(ours, ref)
    assert float(error.max()) <= tol, f"max relative error {float(error.max()):.3g} > {tol:g}"
    assert float(ref.detach().abs().amax()) > 0, "the reference map is all zero: nothing was compared"


def assert_minmax_close(ours_unnormalised: torch.Tensor, ref_minmax: torch.Tensor, tol: float) -> None:
    """Our un-normalised maps, min-max normalised, equal a reference's min-max normalised maps up to
    ``tol`` × max|map| / (max − min) of each map: the factor by which min-max amplifies rounding."""
    ours = ours_unnormalised.detach().double()
    lo, hi = ours.amin(dim=(-2, -1)), ours.amax(dim=(-2, -1))
    assert bool((hi > lo).all()), "a flat map: nothing was compared"
    amplification = ours.abs().amax(dim=(-2, -1)) / (hi - lo)
    error = (minmax(ours) - ref_minmax.detach().double()).abs().amax(dim=(-2, -1))
    worst = float((error / (tol * amplification)).max())
    assert worst <= 1.0, f"min-max error {error.tolist()} exceeds {tol:g} × amplification {amplification.tolist()}"

"""The noisy linear imputation of ROAD (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022, "A
consistent and efficient evaluation strategy for attribution methods"): each removed pixel becomes the
weighted mean of its 8 neighbours inside the image (1/6 for the 4 axial ones, 1/12 for the 4 diagonal
ones), removed neighbours included, so that the removed pixels of one image and channel solve the sparse
linear system

    W_i u_i − Σ_{j removed} w_ij u_j = Σ_{k kept} w_ik x_k     for every removed pixel i,

with W_i the sum of the weights of i's neighbours inside the image; then σ·N(0, 1) noise is added to the
removed pixels. The matrix is symmetric and, wherever a region of removed pixels touches a kept one,
positive definite, so the systems of a whole batch (every image and channel at once) are solved together
by conjugate gradients in float64, preconditioned by one float32 multigrid V-cycle (Jacobi smoothing;
a coarse pixel is unknown where its whole 2×2 block is), on the input's device: about 20 iterations at
224² where plain conjugate gradients take 500. The tests hold the solution equal to a direct sparse solve
(scipy's ``spsolve``, as the authors' code does). An image with every pixel removed has nothing to
average: its pixels become 0 (plus noise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradcam.errors import OptionError

_AXIAL, _DIAGONAL = 1 / 6, 1 / 12


def neighbour_kernel(dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """(1, 1, 3, 3) the neighbours' weights: 1/6 axial, 1/12 diagonal, 0 at the centre."""
    d, a = _DIAGONAL, _AXIAL
    return torch.tensor([[d, a, d], [a, 0.0, a], [d, a, d]], dtype=dtype, device=device).view(1, 1, 3, 3)


def noisy_linear_impute(x: torch.Tensor, removed: torch.Tensor, *, noise: float | torch.Tensor = 0.0,
                        generator: torch.Generator | None = None, tol: float = 1e-7,
                        max_iter: int = 500) -> torch.Tensor:
    """``x`` (B, C, H, W) with the pixels where ``removed`` (B, H, W) is True imputed.

    ``noise``: σ of the noise added to the imputed pixels, a number or one per channel (C,), in ``x``'s
    units; ``tol``: the relative residual ‖b − Au‖ / ‖b‖ at which each system counts as solved."""
    if x.dim() != 4 or tuple(removed.shape) != (x.shape[0], *x.shape[2:]):
        raise OptionError(f"the imputation takes images (B, C, H, W) and masks (B, H, W), got {tuple(x.shape)} "
                          f"and {tuple(removed.shape)}")
    removed = removed.to(x.device, torch.bool).unsqueeze(1)
    dtype = torch.float32 if x.device.type == "mps" else torch.float64  # no float64 on Apple GPUs
    fine, values = _Grid(removed, dtype), x.to(dtype)
    rhs = torch.where(removed, fine.neighbours(torch.where(removed, 0.0, values)), 0.0)
    solution = _conjugate_gradients(fine, _grids(removed, torch.float32), rhs, tol, max_iter)
    if isinstance(noise, torch.Tensor) or noise:
        sigma = torch.as_tensor(noise, dtype=dtype, device=x.device).reshape(-1, 1, 1)
        draw = torch.randn(x.shape, generator=generator, dtype=dtype,
                           device=generator.device if generator is not None else x.device)
        solution = solution + sigma * draw.to(x.device)
    return torch.where(fine.removed, solution, values).to(x.dtype)


class _Grid:
    """One level of the system: the removed pixels (B, 1, h, w) and the operator A on them."""

    def __init__(self, removed: torch.Tensor, dtype: torch.dtype):
        self.removed = removed
        self.kernel = neighbour_kernel(dtype, removed.device)
        self.weight_sum = self.neighbours(torch.ones(1, 1, *removed.shape[2:], dtype=dtype, device=removed.device))
        self.inverse_diagonal = torch.where(removed, 1.0 / self.weight_sum, 0.0)

    def neighbours(self, t: torch.Tensor) -> torch.Tensor:
        """Σ_j w_ij t_j over each pixel's neighbours inside the image."""
        return F.conv2d(t.reshape(-1, 1, *t.shape[2:]), self.kernel, padding=1).view(t.shape)

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """A u on the removed pixels (u is 0 on the kept ones)."""
        return torch.where(self.removed, self.weight_sum * u - self.neighbours(u), 0.0)


def _grids(removed: torch.Tensor, dtype: torch.dtype) -> list[_Grid]:
    """The fine grid and coarser ones, each 2× coarser, a coarse pixel removed where its whole 2×2 block is."""
    grids = [_Grid(removed, dtype)]
    while min(grids[-1].removed.shape[2:]) > 4:
        kept = (~grids[-1].removed).to(dtype)
        coarse = F.max_pool2d(kept, 2, ceil_mode=True) == 0
        if not bool(coarse.any()):
            break
        grids.append(_Grid(coarse, dtype))
    return grids


def _v_cycle(grids: list[_Grid], level: int, r: torch.Tensor) -> torch.Tensor:
    """An approximation of A⁻¹ r: a Jacobi step, the coarse grid's correction of what is left (the
    residual averaged over 2×2 blocks, ×4 for the grid's doubled spacing), a Jacobi step; symmetric."""
    grid = grids[level]
    e = grid.inverse_diagonal * r
    if level + 1 < len(grids):
        coarse = grids[level + 1]
        left = F.avg_pool2d(r - grid.apply(e), 2, ceil_mode=True) * 4.0
        correction = _v_cycle(grids, level + 1, torch.where(coarse.removed, left, 0.0))
        up = F.interpolate(correction, scale_factor=2.0, mode="nearest")[..., : r.shape[-2], : r.shape[-1]]
        e = e + torch.where(grid.removed, up, 0.0)
    return e + grid.inverse_diagonal * (r - grid.apply(e))


def _conjugate_gradients(fine: _Grid, grids: list[_Grid], rhs: torch.Tensor, tol: float,
                         max_iter: int) -> torch.Tensor:
    """Solve A u = rhs for every (B, C) system at once, preconditioned by a V-cycle on ``grids`` (in
    float32: a preconditioner needs no more); each system stops moving once its relative residual is
    below ``tol``."""
    dims = (2, 3)

    def precondition(r: torch.Tensor) -> torch.Tensor:
        return _v_cycle(grids, 0, r.float()).to(r.dtype)

    u, r = torch.zeros_like(rhs), rhs.clone()
    z = precondition(r)
    p, rz = z.clone(), (r * z).sum(dims, keepdim=True)
    target = tol * rhs.norm(dim=dims, keepdim=True)
    for _ in range(max_iter):
        active = r.norm(dim=dims, keepdim=True) > target
        if not bool(active.any()):
            return u
        ap = fine.apply(p)
        pap = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(active & (pap > 0), rz / pap.where(pap > 0, 1.0), 0.0)
        u, r = u + alpha * p, r - alpha * ap
        z = precondition(r)
        rz_next = (r * z).sum(dims, keepdim=True)
        beta = torch.where(active & (rz > 0), rz_next / rz.where(rz > 0, 1.0), 0.0)
        p, rz = z + beta * p, rz_next
    raise ArithmeticError(f"the imputation did not converge in {max_iter} iterations")

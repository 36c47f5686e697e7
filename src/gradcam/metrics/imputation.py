"""The noisy linear imputation of ROAD (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022, "A
consistent and efficient evaluation strategy for attribution methods"): each removed pixel becomes the
weighted mean of its 8 neighbours inside the image (1/6 for the 4 axial ones, 1/12 for the 4 diagonal
ones), removed neighbours included, so that the removed pixels of one image and channel solve the sparse
linear system

    W_i u_i − Σ_{j removed} w_ij u_j = Σ_{k kept} w_ik x_k     for every removed pixel i,

with W_i the sum of the weights of i's neighbours inside the image; then σ·N(0, 1) noise is added to the
removed pixels. The matrix is symmetric and, wherever a region of removed pixels touches a kept one,
positive definite, so the systems of a whole batch (every image and channel at once) are solved together
by conjugate gradients in float64, preconditioned by one float32 multigrid V-cycle, on the input's
device. The V-cycle: a Jacobi step, the residual restricted to a grid 2× coarser (a coarse pixel is
unknown where its whole 2×2 block is), the same system solved there the same way, its correction
interpolated back bilinearly, a Jacobi step; restriction is the interpolation's transpose, so the
preconditioner is symmetric. About 13 iterations at 224² (18 with piecewise-constant interpolation, 500
with no preconditioner). The stencil is separable, ([1, 2, 1] ⊗ [1, 2, 1]) / 12 less 1/3 at the centre,
and is applied as shifted sums (a one-channel 3×3 convolution is ten times slower on CPUs). The tests
hold the solution equal to a direct sparse solve (scipy's ``spsolve``, as the authors' code does). An
image with every pixel removed has nothing to average: its pixels become 0 (plus noise).
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
    rhs = neighbours(torch.where(removed, 0.0, values)).mul_(removed)
    solution = _conjugate_gradients(fine, _grids(removed, torch.float32), rhs, tol, max_iter)
    if isinstance(noise, torch.Tensor) or noise:
        sigma = torch.as_tensor(noise, dtype=dtype, device=x.device).reshape(-1, 1, 1)
        # image by image, each (C, H, W): an image's noise is the same however the images are batched
        # (the generator's normal draws of one shape differ from a larger draw's slices)
        draw = torch.stack([torch.randn(x.shape[1:], generator=generator, dtype=dtype,
                                        device=generator.device if generator is not None else x.device)
                            for _ in range(len(x))])
        solution = solution + sigma * draw.to(x.device)
    return torch.where(removed, solution, values).to(x.dtype)


def neighbours(t: torch.Tensor) -> torch.Tensor:
    """Σ_j w_ij t_j over each pixel's neighbours inside the image (:func:`neighbour_kernel`), for
    ``t`` (..., H, W): ([1, 2, 1] ⊗ [1, 2, 1]) / 12 · t less t / 3."""
    return _box(t).mul_(1 / 12).sub_(t, alpha=1 / 3)


def _box(t: torch.Tensor) -> torch.Tensor:
    """Σ over each pixel's 3 × 3 neighbourhood, itself included, weighted [1, 2, 1] ⊗ [1, 2, 1], zero
    outside the image: a pass of shifted sums along each axis."""
    p = F.pad(t, (1, 1, 1, 1))
    rows = torch.add(p[..., :-2], p[..., 2:]).add_(p[..., 1:-1], alpha=2.0)
    return torch.add(rows[..., :-2, :], rows[..., 2:, :]).add_(rows[..., 1:-1, :], alpha=2.0)


class _Grid:
    """One level of the system: the removed pixels (B, 1, h, w) and the operator on them,
    A u = W u − Σ_j w_ij u_j = (W + 1/3) u − box(u) / 12 on the removed pixels, 0 on the kept ones."""

    def __init__(self, removed: torch.Tensor, dtype: torch.dtype):
        self.removed, self.mask = removed, removed.to(dtype)
        weight_sum = neighbours(torch.ones(1, 1, *removed.shape[2:], dtype=dtype, device=removed.device))
        self.centre, self.spread = self.mask * (weight_sum + 1 / 3), self.mask * (1 / 12)
        self.inverse_diagonal = self.mask / weight_sum

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """A u (u is 0 on the kept pixels)."""
        return torch.addcmul(self.centre * u, self.spread, _box(u), value=-1.0)


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


def _prolong(c: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation onto the grid 2× finer, cut to ``size``: along each axis, fine pixel 2i is
    ¾ c_i + ¼ c_(i−1) and 2i + 1 is ¾ c_i + ¼ c_(i+1), the edge value repeated past the image's edges
    (``F.interpolate``'s bilinear, ``align_corners=False``, which is six times slower on CPUs)."""
    return _prolong_axis(_prolong_axis(c, -1), -2)[..., : size[0], : size[1]]


def _restrict(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The transpose of :func:`_prolong` onto a grid of ``size``: each coarse pixel gathers its 2×2
    block at ¾ per axis and the next fine pixel out on each side at ¼ (an odd edge padded with zeros)."""
    return _restrict_axis(_restrict_axis(f, size[1], -1), size[0], -2)


def _prolong_axis(c: torch.Tensor, dim: int) -> torch.Tensor:
    """Along ``dim`` (-1 or -2), m values onto 2m: between c_i and c_(i+1), fine pixels at ¼ and ¾."""
    m = c.shape[dim]
    fine = c.new_empty((*c.shape[:dim], 2 * m, *c.shape[dim:][1:]))
    even, odd = fine.unflatten(dim, (m, 2)).unbind(dim)
    a, b = c.narrow(dim, 0, m - 1), c.narrow(dim, 1, m - 1)
    torch.lerp(a, b, 0.25, out=odd.narrow(dim, 0, m - 1))
    torch.lerp(a, b, 0.75, out=even.narrow(dim, 1, m - 1))
    even.narrow(dim, 0, 1).copy_(c.narrow(dim, 0, 1))  # the edges: the value repeated
    odd.narrow(dim, m - 1, 1).copy_(c.narrow(dim, m - 1, 1))
    return fine


def _restrict_axis(f: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    """The transpose of :func:`_prolong_axis`: c_i = ¾ f_2i + ¼ f_(2i−1) + ¾ f_(2i+1) + ¼ f_(2i+2)."""
    n = f.shape[dim]
    if n < 2 * m:
        f = F.pad(f, (0, 2 * m - n) if dim == -1 else (0, 0, 0, 2 * m - n))
    even, odd = f.unflatten(dim, (m, 2)).unbind(dim)
    left, right = torch.empty_like(even), torch.empty_like(odd)
    torch.lerp(odd.narrow(dim, 0, m - 1), even.narrow(dim, 1, m - 1), 0.75, out=left.narrow(dim, 1, m - 1))
    torch.lerp(even.narrow(dim, 1, m - 1), odd.narrow(dim, 0, m - 1), 0.75, out=right.narrow(dim, 0, m - 1))
    left.narrow(dim, 0, 1).copy_(even.narrow(dim, 0, 1))  # the edges: all of the repeated value's weight
    right.narrow(dim, m - 1, 1).copy_(odd.narrow(dim, m - 1, 1))
    return left.add_(right)


def _v_cycle(grids: list[_Grid], level: int, r: torch.Tensor) -> torch.Tensor:
    """An approximation of A⁻¹ r: a Jacobi step, the coarse grid's correction of what is left (the
    residual restricted: its coarse sums carry the ×4 of the grid's doubled spacing), a Jacobi step."""
    grid = grids[level]
    e = grid.inverse_diagonal * r
    if level + 1 < len(grids):
        coarse = grids[level + 1]
        left = _restrict(r - grid.apply(e), tuple(coarse.removed.shape[2:])).mul_(coarse.mask)
        e.addcmul_(grid.mask, _prolong(_v_cycle(grids, level + 1, left), tuple(r.shape[2:])))
    return e.addcmul_(grid.inverse_diagonal, r - grid.apply(e))


def _conjugate_gradients(fine: _Grid, grids: list[_Grid], rhs: torch.Tensor, tol: float,
                         max_iter: int) -> torch.Tensor:
    """Solve A u = rhs for every (B, C) system at once, preconditioned by a V-cycle on ``grids`` (in
    float32: a preconditioner needs no more); each system stops moving once its relative residual is
    below ``tol``."""
    shape = rhs.shape

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (B, C, 1, 1) per system, with no temporary
        return torch.bmm(a.reshape(-1, 1, a[0, 0].numel()), b.reshape(-1, b[0, 0].numel(), 1)).view(*shape[:2], 1, 1)

    def precondition(r: torch.Tensor) -> torch.Tensor:
        return _v_cycle(grids, 0, r.float()).to(r.dtype)

    u, r = torch.zeros_like(rhs), rhs.clone()
    z = precondition(r)
    p, rz = z.clone(), dot(r, z)
    target = tol * rhs.norm(dim=(2, 3), keepdim=True)
    for _ in range(max_iter):
        active = r.norm(dim=(2, 3), keepdim=True) > target
        if not bool(active.any()):
            return u
        ap = fine.apply(p)
        pap = dot(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap.where(pap > 0, 1.0), 0.0)
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        z = precondition(r)
        rz_next = dot(r, z)
        beta = torch.where(active & (rz > 0), rz_next / rz.where(rz > 0, 1.0), 0.0)
        p, rz = z.addcmul_(beta, p), rz_next
    raise ArithmeticError(f"the imputation did not converge in {max_iter} iterations")

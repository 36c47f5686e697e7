"""SS-CAM: Smoothed Score-CAM (Wang, Naidu, Michael & Kundu 2020)."""

from __future__ import annotations

import torch

from gradcam.engine.methods.registry import register_method
from gradcam.engine.methods.scorecam import ScoreCAM
from gradcam.errors import OptionError


@register_method("sscam")
class SSCAM(ScoreCAM):
    """SS-CAM: Score-CAM whose channel scores are averaged over noisy copies of each mask; no gradient.

    H^k = s(Up(A^k)) as in Score-CAM, S_k^c = (1/N) Σ_i f^c(X ∘ (H^k + δ_i)), δ_i ~ N(0, ``std``²) at the
    input's resolution, α^c = softmax_k(S^c), L^c = ReLU(Σ_k α_k^c A^k). ``num_samples`` = N (35) and
    ``std`` (2.0, on masks scaled to [0, 1]) are the paper's and torchcam's defaults. Everything else is
    Score-CAM's: ``batch_size`` (mask, noise) pairs scored at a time under inference mode, ``max_channels``,
    ``progress``, low ``precision`` only in the masked passes.

    Departures from torchcam's ``SSCAM`` (0.5): the same N draws δ_i (seeded by ``seed``) perturb every
    channel's mask — common random numbers, so that the channels, which the softmax compares, are scored
    under the same perturbations, a map does not depend on ``batch_size`` or on the batch a sample came in,
    and identical masks are scored once; torchcam draws fresh noise for every channel and sample from the
    global generator. The masks are upsampled, then min-max scaled (Score-CAM's s(Up(A^k))); torchcam scales
    the low-resolution map, then upsamples, which leaves an upsampled mask slightly inside [0, 1].
    """

    def __init__(self, model, target_layer=None, *, num_samples: int = 35, std: float = 2.0, **options):
        super().__init__(model, target_layer, **options)
        if int(num_samples) < 1 or float(std) < 0:
            raise OptionError(f"num_samples must be >= 1 and std >= 0, got {num_samples} and {std}")
        self.num_samples, self.std = int(num_samples), float(std)
        self._noise: torch.Tensor | None = None

    @property
    def variants(self) -> int:
        return self.num_samples

    def _prepare(self, x: torch.Tensor) -> None:
        gen = torch.Generator(device=x.device).manual_seed(self.seed)  # the same draws for every sample
        self._noise = torch.randn((self.num_samples, *x.shape[2:]), generator=gen, device=x.device) * self.std

    def vary(self, masks: torch.Tensor, variants: torch.Tensor) -> torch.Tensor:
        return masks + self._noise[variants]

"""IS-CAM: Integrated Score-CAM (Naidu, Ghosh, Maurya, Nayak & Kundu 2020)."""

from __future__ import annotations

import torch

from gradcam.engine.methods.registry import register_method
from gradcam.engine.methods.scorecam import ScoreCAM
from gradcam.errors import OptionError


@register_method("iscam")
class ISCAM(ScoreCAM):
    """IS-CAM: Score-CAM whose channel scores are averaged along a path of growing masks; no gradient.

    H^k = s(Up(A^k)) as in Score-CAM, S_k^c = (1/N) Σ_{i=1..N} f^c(X ∘ (c_i H^k)) with the accumulated
    coefficients c_i = Σ_{j=1..i} j/N = i(i+1)/(2N) (each step adds i/N of the mask to the previous
    one), α^c = softmax_k(S^c), L^c = ReLU(Σ_k α_k^c A^k). ``num_samples`` = N (10, the paper's and
    torchcam's default). Deterministic; everything else is Score-CAM's: ``batch_size`` (mask, step)
    pairs scored at a time under inference mode, ``max_channels``, ``progress``, low ``precision`` only in
    the masked passes, identical masks scored once.

    The coefficients are those torchcam's ``ISCAM`` (0.5) computes; the sum written in its docstring
    starts at j = 0, which would shift them by one step (the step c = 0 scores the same blank input for
    every channel and cancels in the softmax). Departure from torchcam: the masks are upsampled, then
    min-max scaled (Score-CAM's s(Up(A^k))); torchcam scales the low-resolution map, then upsamples.
    """

    def __init__(self, model, target_layer=None, *, num_samples: int = 10, **options):
        super().__init__(model, target_layer, **options)
        if int(num_samples) < 1:
            raise OptionError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = int(num_samples)

    @property
    def variants(self) -> int:
        return self.num_samples

    def vary(self, masks: torch.Tensor, variants: torch.Tensor) -> torch.Tensor:
        steps = (variants + 1).to(masks.dtype)
        return masks * (steps * (steps + 1) / (2 * self.num_samples)).view(-1, *[1] * (masks.dim() - 1))

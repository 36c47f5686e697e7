"""Finer-CAM (Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su & Chao, CVPR 2025, "Finer-CAM: Spotting
the Difference Reveals Finer Details for Visual Explanation", arXiv 2501.11309)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.engine.targets.classes import extract_logits
from gradcam.engine.targets.tasks import ClassRegion, segmentation_scores
from gradcam.errors import OptionError, TargetError


@register_method("finercam")
class FinerCAM(CAMMethod):
    """Finer-CAM: Grad-CAM of the class score minus the scores of its most similar classes (fine details).

    y' = y^c − α (1/T) Σ_t y^{d_t}, with d_1 … d_T (``comparisons``, 3 by default) the classes whose
    scores in the same forward pass are closest to y^c, c excluded (the most similar, as both reference
    implementations pick them); α = ``strength`` (the papers' α: ``alpha`` is the overlay's opacity
    everywhere else here; pytorch-grad-cam's default 1; α = 0 is Grad-CAM).
    Then Grad-CAM on y': w_k = (1/Z) Σ_ij ∂y'/∂A^k_ij, L = ReLU(Σ_k w_k A^k)
    (Zhang et al., CVPR 2025). Features shared with the similar classes cancel; what tells c apart remains.
    torchcam's ``FinerCAM`` is this formula (its default α is 0.6); pytorch-grad-cam's weights each
    difference y^c − α y^{d_t} by the softmax probability p_{d_t}, differentiating through p too, which
    the paper does not: both agree with one comparison class. For a segmenter's ``ClassRegion`` target the
    scores compared are the classes' logits summed over the same region. Other callable targets (boxes,
    regressions, embeddings) have no classes to compare: a TargetError.
    """

    def __init__(self, model, target_layer=None, *, comparisons: int = 3, strength: float = 1.0, **options):
        super().__init__(model, target_layer, **options)
        if isinstance(comparisons, bool) or int(comparisons) != comparisons or comparisons < 1:
            raise OptionError(f"comparisons (the number of similar classes compared) must be an integer >= 1, "
                              f"got {comparisons!r}")
        if isinstance(strength, bool) or not float(strength) == float(strength):
            raise OptionError(f"strength (the comparison strength) must be a number, got {strength!r}")
        self.comparisons, self.strength = int(comparisons), float(strength)

    def unsuitable(self, x: torch.Tensor | None = None) -> str:
        why = super().unsuitable(x)
        if why or x is None:
            return why
        from gradcam.engine.capture import eval_mode

        with eval_mode(self.model), torch.no_grad(), self.autocast(x.device):
            output = self.run_model(x)
        try:
            logits = extract_logits(output)
        except TargetError as exc:
            return f"{self.name} compares class scores: {exc}"
        if logits.dim() != 2 or logits.shape[1] < 2:
            return (f"{self.name} compares a class with its most similar classes: the model gives scores of shape "
                    f"{tuple(logits.shape)}, not (B, classes ≥ 2)")
        return ""

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        return [self._gradient_maps(self.contrast(target, run.output), run.activations, last=i == len(targets) - 1)
                for i, target in enumerate(targets)]

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return Fn.relu(Fn.weighted_sum(Fn.gap_weights(grads), activations))

    def contrast(self, target: Target, output) -> torch.Tensor:
        """(B,) y^c − α · mean of the ``comparisons`` most similar classes' scores, chosen from ``output``."""
        if target.fn is None:
            scores, classes = extract_logits(output), target.classes
        elif isinstance(target.fn, ClassRegion):
            region = target.fn
            logits = segmentation_scores(output)
            mask = torch.as_tensor(region.mask, device=logits.device).to(logits.dtype)
            scores = (logits * (mask if mask.dim() == 3 else mask[None])[:, None]).sum(dim=(-2, -1))
            classes = torch.full((len(scores),), region.class_index, dtype=torch.long, device=scores.device)
        else:
            raise TargetError(f"{self.name} compares a class with its most similar classes; a "
                              f"{type(target.fn).__name__} target has no classes to compare (use gradcam)")
        if scores.dim() != 2 or scores.shape[1] < 2:
            raise TargetError(f"{self.name} compares a class with its most similar classes: scores of shape "
                              f"{tuple(scores.shape)} are not (B, classes ≥ 2)")
        return finer_scores(scores, classes.to(scores.device), self.comparisons, self.strength)


def finer_scores(scores: torch.Tensor, classes: torch.Tensor, comparisons: int, alpha: float) -> torch.Tensor:
    """(B, C) scores, (B,) classes -> (B,) y^c − α · mean of the ``comparisons`` (at most C − 1) classes whose
    scores are closest to y^c, chosen on the detached scores."""
    values = scores.detach().float()
    index = classes.view(-1, 1)
    distance = (values - values.gather(1, index)).abs().scatter(1, index, float("inf"))
    chosen = distance.topk(min(comparisons, scores.shape[1] - 1), dim=1, largest=False, sorted=True).indices
    return scores.gather(1, index)[:, 0] - alpha * scores.gather(1, chosen).mean(dim=1)

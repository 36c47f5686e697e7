"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, CVPR-W 2020)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import OptionError


@register_method("scorecam")
class ScoreCAM(CAMMethod):
    """Score-CAM: each channel, upsampled and min-max scaled, masks the input; no gradient.

    H^k = s(Up(A^k)) (bilinear, min-max to [0, 1]; a constant channel masks everything out),
    S_k^c = f^c(X ∘ H^k) − f^c(X_b), α^c = softmax_k(S^c) (Algorithm 1, f^c the pre-softmax score),
    L^c = ReLU(Σ_k α_k^c A^k). The baseline term f^c(X_b) is the same for every k and cancels in the
    softmax, so it is not computed. The masked inputs are scored ``batch_size`` at a time under
    inference mode, never all at once, each distinct mask once; ``max_channels=N`` keeps the N channels
    of largest mean activation (Faster Score-CAM, Wang et al. 2020); ``progress=True`` shows a progress
    bar. With ``precision="bf16"`` or ``"fp16"`` only the masked passes run in low precision: the one
    pass that captures A^k and chooses the class runs in float32, so the masks, the class and the A^k
    of the sum are float32's.
    """

    uses_gradients = False
    captures_in_float32 = True

    def __init__(self, model, target_layer=None, *, batch_size: int = 32, max_channels: int | None = None,
                 progress: bool = False, **options):
        super().__init__(model, target_layer, **options)
        if int(batch_size) < 1 or (max_channels is not None and int(max_channels) < 1):
            raise OptionError(f"batch_size and max_channels must be >= 1, got {batch_size} and {max_channels}")
        self.batch_size, self.progress = int(batch_size), progress
        self.max_channels = None if max_channels is None else int(max_channels)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        per_layer = [self._layer_maps(run.x, self.as_map(acts, i).float(), targets)
                     for i, acts in enumerate(run.activations)]
        return [list(maps) for maps in zip(*per_layer)]

    def _layer_maps(self, x: torch.Tensor, acts: torch.Tensor, targets: list[Target]) -> list[torch.Tensor]:
        b, k, *spatial = acts.shape
        n = k if self.max_channels is None else min(self.max_channels, k)
        channels = acts.mean(dim=Fn.spatial_axes(acts)).topk(n, dim=1).indices if n < k else None
        chosen = acts if channels is None else \
            acts.gather(1, channels.view(b, n, *[1] * len(spatial)).expand(-1, -1, *spatial))
        scores = self._masked_scores(x, chosen, targets)  # (T, B, n)
        return [Fn.relu(Fn.weighted_sum(s.softmax(dim=-1), chosen)) for s in scores]

    # Variants of each mask scored and averaged (SS-CAM's noisy copies, IS-CAM's path): Score-CAM has one.
    variants = 1

    def vary(self, masks: torch.Tensor, variants: torch.Tensor) -> torch.Tensor:
        """Masks (m, *S), min-max scaled, as scored in variant ``variants[j]`` of mask j (Score-CAM: as
        they are)."""
        return masks

    def _prepare(self, x: torch.Tensor) -> None:
        """Called once per sample before its masks are scored (SS-CAM draws its noise here)."""

    def _masked_scores(self, x: torch.Tensor, chosen: torch.Tensor, targets: list[Target]) -> torch.Tensor:
        """(T, B, n) scores f^c(X ∘ H^k), averaged over the :meth:`vary` variants of each mask. Channels
        whose min-max scaled maps are identical (all the constant ones, and e.g. every channel active at
        one same position) give identical masks: each distinct mask is scored once. ``batch_size`` (mask,
        variant) pairs are scored at a time. Masked images and volumes run channels-last (faster on CPUs)."""
        layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
        b, n = chosen.shape[:2]
        per = self.variants
        scores = torch.empty(len(targets), b, n, device=x.device)
        groups = [_distinct_maps(chosen[i]) for i in range(b)]
        from tqdm.auto import tqdm  # here, not at import: importing the engine loads no tqdm

        bar = tqdm(total=per * sum(len(first) for first, _ in groups), desc=self.name, unit="mask",
                   disable=None if self.progress else True, leave=False)  # disable=None: on a terminal only
        try:
            with eval_mode(self.model), torch.inference_mode(), self.autocast(x.device):
                for i, (first, inverse) in enumerate(groups):
                    self._prepare(x)
                    distinct = torch.zeros(len(targets), len(first), device=x.device)
                    total = len(first) * per
                    for start in range(0, total, self.batch_size):
                        stop = min(start + self.batch_size, total)
                        pairs = torch.arange(start, stop, device=x.device)
                        which, variant = pairs // per, pairs % per  # mask-major: a chunk upsamples few masks
                        lo, hi = start // per, (stop - 1) // per + 1
                        masks = Fn.normalize(Fn.upsample(chosen[i, first[lo:hi]], x.shape[2:]), "minmax")
                        masks = self.vary(masks[which - lo], variant)
                        masked = x[i] * masks[:, None].to(x.dtype)
                        if layout is not None:
                            masked = masked.contiguous(memory_format=layout)
                        rows = torch.full((len(pairs),), i, dtype=torch.long, device=x.device)
                        output = self.run_rows(masked, rows)
                        for t, target in enumerate(targets):
                            distinct[t].index_add_(0, which, target.scores(output, rows).float() / per)
                        bar.update(len(pairs))
                    scores[:, i] = distinct[:, inverse]
        finally:
            bar.close()
        return scores


def _distinct_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For (n, h, w) channel maps: the first channel of each distinct min-max scaled map, and for
    every channel the index of its map among those."""
    scaled = Fn.normalize(maps, "minmax").flatten(1)
    _, inverse = torch.unique(scaled, dim=0, return_inverse=True)
    count = int(inverse.max()) + 1
    order = torch.arange(len(maps), device=maps.device)
    first = torch.full((count,), len(maps), device=maps.device).scatter_reduce(0, inverse, order, "amin")
    return first, inverse

"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, CVPR-W 2020)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .. import functional as Fn
from ..errors import OptionError
from .base import CAMMethod, Pass, Target, eval_mode
from .registry import register_method


@register_method("scorecam")
class ScoreCAM(CAMMethod):
    """Score-CAM: each channel, upsampled and min-max scaled, masks the input; no gradient.

    H^k = s(Up(A^k)) (bilinear, min-max to [0, 1]; a constant channel masks everything out),
    S_k^c = f^c(X ∘ H^k) − f^c(X_b), α^c = softmax_k(S^c) (Algorithm 1, f^c the pre-softmax score),
    L^c = ReLU(Σ_k α_k^c A^k). The baseline term f^c(X_b) is the same for every k and cancels in the
    softmax, so it is not computed. The masked inputs are scored ``batch_size`` at a time under
    inference mode, never all at once; ``max_channels=N`` keeps the N channels of largest mean
    activation (Faster Score-CAM, Wang et al. 2020); ``progress=True`` shows a progress bar.
    """

    uses_gradients = False

    def __init__(self, model, target_layer=None, *, batch_size: int = 32, max_channels: int | None = None,
                 progress: bool = False, **options):
        super().__init__(model, target_layer, **options)
        if int(batch_size) < 1 or (max_channels is not None and int(max_channels) < 1):
            raise OptionError(f"batch_size and max_channels must be >= 1, got {batch_size} and {max_channels}")
        self.batch_size, self.progress = int(batch_size), progress
        self.max_channels = None if max_channels is None else int(max_channels)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        per_layer = [self._layer_maps(run.x, acts.float(), targets) for acts in run.activations]
        return [list(maps) for maps in zip(*per_layer)]

    def _layer_maps(self, x: torch.Tensor, acts: torch.Tensor, targets: list[Target]) -> list[torch.Tensor]:
        b, k, h, w = acts.shape
        n = k if self.max_channels is None else min(self.max_channels, k)
        channels = acts.mean(dim=(2, 3)).topk(n, dim=1).indices if n < k else None
        chosen = acts if channels is None else acts.gather(1, channels[:, :, None, None].expand(-1, -1, h, w))
        scores = self._masked_scores(x, chosen, targets)  # (T, B, n)
        return [Fn.relu(Fn.weighted_sum(s.softmax(dim=-1), chosen)) for s in scores]

    def _masked_scores(self, x: torch.Tensor, chosen: torch.Tensor, targets: list[Target]) -> torch.Tensor:
        b, n = chosen.shape[:2]
        scores = torch.empty(len(targets), b, n, device=x.device)
        jobs = [(i, start) for i in range(b) for start in range(0, n, self.batch_size)]
        bar = tqdm(total=b * n, desc="score-cam", unit="mask", disable=None if self.progress else True,
                   leave=False)  # disable=None: shown on a terminal only
        try:
            with eval_mode(self.model), torch.inference_mode():
                for i, start in jobs:
                    stop = min(start + self.batch_size, n)
                    masks = Fn.normalize(Fn.upsample(chosen[i, start:stop], x.shape[-2:]), "minmax")
                    output = self.model(x[i] * masks[:, None].to(x.dtype))
                    rows = torch.full((stop - start,), i, dtype=torch.long, device=x.device)
                    for t, target in enumerate(targets):
                        scores[t, i, start:stop] = target.scores(output, rows).float()
                    bar.update(stop - start)
        finally:
            bar.close()
        return scores

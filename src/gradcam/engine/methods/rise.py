"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018)."""

from __future__ import annotations

import math

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target, extract_logits
from gradcam.errors import OptionError


@register_method("rise")
class RISE(CAMMethod):
    """RISE: the class score averaged over random smooth masks of the input; no layer, no gradient.

    Mask M_i: a binary grid of ``cell`` cells along each axis (each 1 with probability ``p``), upsampled
    (bilinear; linear or trilinear for signals and volumes) to (cell + 1) × ⌈S / cell⌉ and cropped to the
    input's size S at a random shift in [0, ⌈S / cell⌉) along each axis. Saliency
    S^c = Σ_i f^c(X ∘ M_i) · M_i / (N · p), N = ``masks`` (the paper's 4000 for 224-px ImageNet images;
    fewer make a noisier map). f^c is the class probability (softmax of the scores), as in the paper,
    with ``probabilities=True`` and a class target; a callable or region target's own score otherwise.

    The masks are drawn from ``seed`` (the same masks for every sample, so a sample's map does not depend
    on its batch) and scored ``batch_size`` at a time under inference mode, never all at once;
    ``precision="bf16"`` applies to the masked passes only. Works on any input: (B, C, L) signals,
    images and (B, C, D, H, W) volumes. Departure from the authors' code: their skimage ``resize``
    (order 1, reflect) is torch's ``interpolate`` with ``align_corners=False`` here.
    """

    needs_layer = False
    uses_gradients = False
    takes_reshape = False  # no target layer
    captures_in_float32 = True  # the pass that chooses the class; the N masked passes run in `precision`

    def __init__(self, model, target_layer=None, *, masks: int = 4000, cell: int = 7, p: float = 0.5,
                 batch_size: int = 64, probabilities: bool = True, progress: bool = False, **options):
        super().__init__(model, target_layer, **options)
        if int(masks) < 1 or int(cell) < 1 or int(batch_size) < 1 or not 0 < float(p) <= 1:
            raise OptionError(f"masks, cell and batch_size must be >= 1 and p in (0, 1], got masks={masks}, "
                              f"cell={cell}, batch_size={batch_size}, p={p}")
        self.masks, self.cell, self.p = int(masks), int(cell), float(p)
        self.batch_size, self.probabilities, self.progress = int(batch_size), bool(probabilities), progress

    def draw(self, size, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The N low-resolution binary grids (N, cell, ...) and the shifts (N, axes), from ``seed``."""
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: the same masks on every device
        grids = (torch.rand((self.masks, *[self.cell] * len(size)), generator=gen) < self.p).float()
        steps = [math.ceil(s / self.cell) for s in size]
        shifts = torch.stack([torch.randint(0, step, (self.masks,), generator=gen) for step in steps], dim=1)
        return grids.to(device), shifts

    def make_masks(self, grids: torch.Tensor, shifts: torch.Tensor, size) -> torch.Tensor:
        """Masks (n, *size) from grids (n, cell, ...) and their shifts (n, axes)."""
        steps = [math.ceil(s / self.cell) for s in size]
        up = Fn.upsample(grids, [(self.cell + 1) * step for step in steps])  # (n, *up)
        # the crop of mask j starts at shifts[j]: gather along each axis with per-mask offsets
        for axis, s in enumerate(size):
            index = shifts[:, axis].to(up.device).view(-1, *[1] * (up.dim() - 1)) + \
                torch.arange(s, device=up.device).view(*[1] * (axis + 1), s, *[1] * (up.dim() - axis - 2))
            up = up.gather(axis + 1, index.expand(*up.shape[:axis + 1], s, *up.shape[axis + 2:]))
        return up

    def score(self, target: Target, output, rows: torch.Tensor) -> torch.Tensor:
        return target_probability(target, output, rows, self.probabilities)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        x = run.x
        b, size = x.shape[0], tuple(x.shape[2:])
        grids, shifts = self.draw(size, x.device)
        saliency = torch.zeros(len(targets), b, *size, device=x.device)
        from tqdm.auto import tqdm  # here, not at import: importing the engine loads no tqdm

        bar = tqdm(total=b * self.masks, desc=self.name, unit="mask", disable=None if self.progress else True,
                   leave=False)
        try:
            with eval_mode(self.model), torch.inference_mode(), self.autocast(x.device):
                for start in range(0, self.masks, self.batch_size):
                    stop = min(start + self.batch_size, self.masks)
                    masks = self.make_masks(grids[start:stop], shifts[start:stop], size)  # (n, *S)
                    for i in range(b):
                        rows = torch.full((stop - start,), i, dtype=torch.long, device=x.device)
                        output = self.run_rows(x[i] * masks[:, None].to(x.dtype), rows)
                        for t, target in enumerate(targets):
                            saliency[t, i] += torch.tensordot(self.score(target, output, rows), masks, dims=1)
                        bar.update(stop - start)
        finally:
            bar.close()
        saliency /= self.masks * self.p
        return [[s] for s in saliency]


def target_probability(target: Target, output, rows: torch.Tensor, probabilities: bool = True) -> torch.Tensor:
    """(n,) f^c of n copies of samples ``rows``: with ``probabilities`` and a class target on (n, classes)
    scores, the class probability (softmax over the classes); otherwise the target's own score."""
    if probabilities and target.fn is None:
        logits = extract_logits(output)
        if logits.dim() == 2 and logits.shape[1] > 1:
            classes = target.classes[rows].view(-1, 1).to(logits.device)
            return logits.float().softmax(dim=1).gather(1, classes)[:, 0]
    return target.scores(output, rows).float()

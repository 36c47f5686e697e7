"""Recipro-CAM (Byun & Lee 2022, arXiv 2209.14074) and its vision-transformer variant (ViT-ReciproCAM,
Byun & Lee 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradcam.engine.capture import eval_mode
from gradcam.engine.layouts import CHANNELS_LAST, TOKENS
from gradcam.engine.methods.ablationcam import AblationCAM
from gradcam.engine.methods.registry import register_method
from gradcam.engine.methods.rise import target_probability
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import OptionError

KERNELS = ("gaussian", "point")
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@register_method("reciprocam")
class ReciproCAM(AblationCAM):
    """Recipro-CAM: the class probability when the layer's features are kept at one position only; no gradient.

    For each position u of the layer's (K, *s) map A: A_u = A ⊙ Φ_u, Φ_u a spatial mask around u, and
    S^c(u) = softmax(g(A_u))_c, g the network after the layer; the raw map is S^c at the layer's
    resolution. ``kernel="gaussian"`` (default): Φ_u is the 3×3 binomial kernel [1, 2, 1] ⊗ [1, 2, 1] / 16
    centred on u (centre 1/4, clipped at the borders; [1, 2, 1] / 4 per axis for signals and volumes), as
    in the authors' implementation; ``"point"``: Φ_u is 1 at u and 0 elsewhere (the paper's basic mask).
    All h·w masked copies of a sample go through g in one batch of at most ``batch_size``, run like
    Ablation-CAM's ablated copies: only the traced network after the layer, or the whole model with the
    layer's output replaced. ``probabilities=False``, a callable or a region target: S is the target's
    own score.

    A transformer's token layer (the ViT variant): the prefix tokens (class, distillation) are kept,
    the patch tokens masked on the patch grid. Pick a layer whose output is the token stream (a block's
    output): the automatic layer of a ViT, the last block's first norm, feeds only the attention, so
    masking it leaves the residual stream whole. A ``reshape=`` cannot be undone, so none is taken.
    """

    def __init__(self, model, target_layer=None, *, kernel: str = "gaussian", probabilities: bool = True,
                 **options):
        super().__init__(model, target_layer, **options)
        if kernel not in KERNELS:
            raise OptionError(f"kernel={kernel!r}: choose one of {', '.join(KERNELS)}")
        self.kernel, self.probabilities = kernel, bool(probabilities)

    def original_scores(self, run: Pass, targets: list[Target]) -> None:
        """None: a masked copy's score is the map's value itself, compared with nothing."""
        return None

    def spatial_masks(self, positions: torch.Tensor, size: tuple[int, ...], device) -> torch.Tensor:
        """Φ_u (n, *size) for the flat positions u = ``positions``."""
        one_hot = torch.zeros(len(positions), _prod(size), device=device)
        one_hot[torch.arange(len(positions), device=device), positions] = 1.0
        one_hot = one_hot.view(len(positions), 1, *size)
        if self.kernel == "point":
            return one_hot[:, 0]
        line = torch.tensor([0.25, 0.5, 0.25], device=device)
        weight = line
        for _ in range(len(size) - 1):
            weight = weight[..., None] * line
        return _CONV[len(size)](one_hot, weight[None, None], padding=1)[:, 0]

    def _layer_maps(self, run: Pass, index: int, original, targets: list[Target]) -> list[torch.Tensor]:
        name, module = self._layers[index]
        acts, layout = run.activations[index], self._readers[index]
        b, _, *size = layout.map_shape(acts.shape)
        size = tuple(size)
        count = _prod(size)
        scores = torch.empty(len(targets), b, count, device=acts.device)
        with eval_mode(self.model), torch.inference_mode(), self.autocast(acts.device):
            suffix = self._tail(name, run, acts)
            for start in range(0, count, self.batch_size):
                stop = min(start + self.batch_size, count)
                masks = self.spatial_masks(torch.arange(start, stop, device=acts.device), size, acts.device)
                for i in range(b):
                    copies = _masked(layout, acts[i], masks.to(acts.dtype))
                    rows = torch.full((stop - start,), i, dtype=torch.long, device=acts.device)
                    output = (suffix.resume(rows, copies) if suffix is not None
                              else self._run_whole(run.x[rows], rows, module, copies))
                    for t, target in enumerate(targets):
                        scores[t, i, start:stop] = target_probability(target, output, rows, self.probabilities)
        return [s.view(b, *size) for s in scores]


def _masked(layout, act: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Copies (n, ...) of one sample's layer output ``act``, copy j multiplied by spatial mask ``masks[j]``
    (n, *s) in the layer's own layout; a transformer's prefix tokens are kept."""
    n = len(masks)
    if layout.kind == CHANNELS_LAST:
        return act[None] * masks[..., None]
    if layout.kind == TOKENS:
        copies = act.expand(n, *act.shape).clone()
        copies[:, layout.prefix:, :] *= masks.reshape(n, -1, 1)
        return copies
    return act[None] * masks[:, None]


def _prod(size) -> int:
    out = 1
    for s in size:
        out *= int(s)
    return out

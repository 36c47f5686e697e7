"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022): the pixels a map ranks
first (MoRF, most relevant first) or last (LeRF, least relevant first) are removed and imputed from their
neighbours (:mod:`.imputation`, the noisy linear imputer), so that the removal's shape tells the model
nothing, and the class's score is read on the imputed image. A faithful map makes MoRF fall fast and
LeRF stay high; ``road_combined`` = mean over the percentiles of (LeRF − MoRF) / 2 (pytorch-grad-cam's
``ROADCombined``), higher is better.

Two protocols, by name:

- ``"road"``, the authors' choices (their ``ImputedDataset``): at each percentile p, exactly ⌊N·p/100⌋
  pixels are removed, ranked by the min-max normalised map plus 10⁻⁴·N(0, 1) (seeded) so that ties fall
  at random; the noise σ is in pixels' units (give the input's per-channel ``std``: the imputation is done
  on the normalised input, which is the same thing, since a weighted mean commutes with x ↦ (x − μ)/σ,
  with σ scaled by 1/std).
- ``"pytorch-grad-cam"``, its ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` / ``ROADCombined``:
  at percentile p, MoRF removes the pixels whose map value is ≥ the map's p-th percentile (linear
  interpolation, so about 100 − p % of them, and every tie at the threshold), LeRF those whose 1 − map is
  ≥ the p-th percentile of 1 − map; the noise σ is in the normalised input's units. Its curves run over the
  fractions removed, 1 − p/100.

Scores: the class's softmax probability (``score="probability"``, the paper's) or its logit. An image's
copies (MoRF and LeRF at every point) are imputed together and scored ``batch_size`` at a time, in the
metric's ``precision`` and ``memory_format`` (:mod:`.faithfulness`); the imputation is float64 whatever
the precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode
from gradcam.errors import OptionError
from gradcam.metrics.faithfulness import _Metric
from gradcam.metrics.imputation import noisy_linear_impute
from gradcam.metrics.registry import register_metric

PROTOCOLS = ("road", "pytorch-grad-cam")
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass
class ROADResult:
    fractions: torch.Tensor  # (P,) the fraction of pixels removed at each point, ascending
    morf: torch.Tensor  # (B, P) the score with the most relevant pixels removed
    lerf: torch.Tensor  # (B, P) the score with the least relevant pixels removed
    original: torch.Tensor  # (B,) the score on the input itself

    @property
    def combined(self) -> torch.Tensor:
        """(B,) mean over the points of (LeRF − MoRF) / 2: higher is better."""
        return ((self.lerf - self.morf) / 2).mean(dim=1)

    def per_sample(self) -> dict[str, torch.Tensor]:
        return {"road_morf": self.morf.mean(dim=1), "road_lerf": self.lerf.mean(dim=1),
                "road_combined": self.combined}

    def curves(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"ROAD MoRF": (self.fractions, self.morf), "ROAD LeRF": (self.fractions, self.lerf)}


@register_metric("road", columns={"road_morf": "lower", "road_lerf": "higher", "road_combined": "higher"},
                 default=False)  # 2 × 9 imputations per image: scored when named
class ROAD(_Metric):
    """ROAD (Rong et al., ICML 2022): MoRF and LeRF scores at ``percentiles`` of pixels removed and
    imputed by the noisy linear imputer, and (LeRF − MoRF) / 2; ``protocol`` "road" (the authors') or
    "pytorch-grad-cam" (module docstring); ``noise`` σ, ``std`` the input's per-channel std (protocol
    "road"), ``seed`` for the noise and the ties; ``precision`` of the forward passes (the imputation
    stays float64)."""

    def __init__(self, model: nn.Module, *, percentiles: Sequence[float] = PERCENTILES, protocol: str = "road",
                 noise: float = 0.01, std: Sequence[float] | None = None, seed: int = 0, **options):
        super().__init__(model, **options)
        if protocol not in PROTOCOLS:
            raise OptionError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        percentiles = [float(p) for p in percentiles]
        if not percentiles or not all(0 < p < 100 for p in percentiles):
            raise OptionError(f"percentiles must be numbers strictly between 0 and 100, got {percentiles}")
        if float(noise) < 0:
            raise OptionError(f"noise must be >= 0, got {noise}")
        self.protocol, self.noise, self.seed = protocol, float(noise), int(seed)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        # the points in order of the fraction removed
        self.percentiles = sorted(percentiles, reverse=protocol == "pytorch-grad-cam")

    def fractions(self) -> torch.Tensor:
        p = torch.tensor(self.percentiles) / 100
        return 1 - p if self.protocol == "pytorch-grad-cam" else p

    def __call__(self, x: torch.Tensor, maps: torch.Tensor, targets: Any = None) -> ROADResult:
        if x.dim() != 4:
            raise OptionError(f"ROAD imputes images: x must be (B, C, H, W), got {tuple(x.shape)}")
        generator = torch.Generator().manual_seed(self.seed)
        with eval_mode(self.model), torch.inference_mode():
            maps, classes, scores = self._prepare(x, maps, targets)
            if self.protocol == "road":
                maps = Fn.normalize(maps, "minmax") + 1e-4 * torch.randn(maps.shape, generator=generator).to(maps)
            noise = self._noise(x)
            # every image's copies (MoRF and LeRF at each point) one after another, imputed in one solve
            # and scored in one forward pass batch_size copies at a time
            removed = torch.stack([self._removed(maps, p, most) for p in self.percentiles for most in (True, False)],
                                  dim=1).flatten(0, 1)  # (B · 2P, H, W)
            image = torch.arange(len(removed), device=x.device) // (2 * len(self.percentiles))
            values = torch.empty(len(removed), device=x.device)
            for start in range(0, len(removed), self.batch_size):
                rows = image[start : start + self.batch_size]
                imputed = noisy_linear_impute(x[rows], removed[start : start + self.batch_size], noise=noise,
                                              generator=generator)
                values[start : start + self.batch_size] = self._scores(imputed, classes[rows])
            values = values.view(len(x), len(self.percentiles), 2)
        return ROADResult(self.fractions(), values[..., 0], values[..., 1], scores)

    def _removed(self, maps: torch.Tensor, percentile: float, most: bool) -> torch.Tensor:
        """(B, H, W) bool: the pixels removed at ``percentile``, the most or the least relevant."""
        flat = maps.flatten(1)
        if self.protocol == "pytorch-grad-cam":
            values = flat if most else 1 - flat
            threshold = torch.quantile(values.double(), percentile / 100, dim=1, keepdim=True)
            return (values.double() >= threshold).view(maps.shape)
        count = int(flat.shape[1] * percentile / 100)
        order = flat.argsort(dim=1, descending=most, stable=True)[:, :count]
        removed = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
        return removed.view(maps.shape)

    def _noise(self, x: torch.Tensor) -> float | torch.Tensor:
        if self.protocol == "road" and self.std is not None and self.noise:
            if len(self.std) not in (1, x.shape[1]):
                raise OptionError(f"std has {len(self.std)} values for an input of {x.shape[1]} channels")
            return self.noise / self.std.expand(x.shape[1])
        return self.noise

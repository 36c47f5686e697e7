"""A data-set audit: is the model right for the right reasons? For every image with a known object mask,
whether the model is right, and whether the map of the true class lies on the object (pointing game,
energy inside: :mod:`gradcam.engine.localisation`). A model that is right while its maps point elsewhere
has learned something else than the object: a watermark, a corner, the background."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gradcam.engine.localisation import energy_inside, pointing_game
from gradcam.engine.methods import create_method
from gradcam.errors import OptionError


@dataclass
class Audit:
    """Per image: ``predicted``, ``correct``, ``on_object`` (the true class's map peaks on the object)
    and ``energy`` (the share of the map's positive energy on it)."""

    labels: torch.Tensor
    predicted: torch.Tensor
    on_object: torch.Tensor
    energy: torch.Tensor
    threshold: float = 0.5

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    @property
    def wrong_reasons(self) -> torch.Tensor:
        """(B,) bool: right, with a map whose peak is off the object."""
        return self.correct & ~self.on_object

    @property
    def share_wrong_reasons(self) -> float:
        """Among the right answers, the share whose map points off the object."""
        right = int(self.correct.sum())
        return float(self.wrong_reasons.sum()) / right if right else float("nan")

    @property
    def suspicious(self) -> bool:
        """More than ``threshold`` of the right answers point off the object."""
        return self.share_wrong_reasons > self.threshold

    def summary(self) -> str:
        right = int(self.correct.sum())
        verdict = ("right for the wrong reasons: look at the flagged images" if self.suspicious
                   else "its maps mostly lie on the objects")
        return (f"accuracy {self.accuracy:.1%}; of {right} right answers, {int(self.wrong_reasons.sum())} "
                f"({self.share_wrong_reasons:.1%}) point off the object; energy on the object "
                f"{float(self.energy.nanmean()):.1%} on average: {verdict}")


def audit(model, x: torch.Tensor, labels: Any, masks: torch.Tensor, *, method: str = "gradcam", layer: Any = None,
          batch_size: int = 32, threshold: float = 0.5, **options: Any) -> Audit:
    """Audit ``model`` on the preprocessed images ``x`` (B, C, *spatial) with their true ``labels`` (B,)
    and object ``masks`` (B, *spatial, bool): the maps are those of the true class, by ``method``."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    masks = torch.as_tensor(masks)
    if len(labels) != len(x) or len(masks) != len(x):
        raise OptionError(f"one label and one mask per image: {len(x)} images, {len(labels)} labels, "
                          f"{len(masks)} masks")
    if int(batch_size) < 1 or not 0.0 <= threshold <= 1.0:
        raise OptionError(f"batch_size must be >= 1 and threshold in [0, 1], got {batch_size} and {threshold}")
    cam = create_method(method, model, layer, **options)
    predicted, on_object, energy = [], [], []
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        out = cam(x[rows], targets=labels[rows].to(x.device))
        predicted.append(out.logits.argmax(dim=1).cpu())
        maps = out.maps.cpu()
        on_object.append(pointing_game(maps, masks[rows].cpu()))
        energy.append(energy_inside(maps, masks[rows].cpu()))
    return Audit(labels.cpu(), torch.cat(predicted), torch.cat(on_object), torch.cat(energy), threshold)

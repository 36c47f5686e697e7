"""Targets that give several maps per sample, chosen from the output on the explained input: the
chosen targets themselves (for smoothing copies) and multi-label classification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from gradcam.engine.targets.classes import extract_logits, resolve_classes
from gradcam.errors import TargetError


class TargetSet:
    """Targets that give several maps per sample (one per object, one per label), chosen from the model's
    output on the explained input: ``expand`` -> (classes (B, k), one callable per column or None)."""

    def expand(self, output: Any, input_size: Sequence[int], labels: Sequence[str] | None
               ) -> tuple[torch.Tensor, list[Callable] | None]:
        raise NotImplementedError


@dataclass(frozen=True)
class Chosen(TargetSet):
    """Targets already expanded: the same classes and callables for the smoothing copies of an input."""

    classes: torch.Tensor
    fns: list | None = None

    def expand(self, output, input_size, labels):
        return self.classes, self.fns


@dataclass(frozen=True)
class MultiLabel(TargetSet):
    """Multi-label classification (one sigmoid per label): one map per label, each the label's logit.
    ``labels`` (indices or names) picks them; by default every label present, p = sigmoid(logit) ≥
    ``threshold``, highest first (a batch must then have the same number present in each sample)."""

    labels: Sequence[int | str] | None = None
    threshold: float = 0.5

    def expand(self, output, input_size, labels):
        logits = extract_logits(output).detach()
        if logits.dim() != 2:
            raise TargetError(f"MultiLabel needs (B, num_labels) scores, got shape {tuple(logits.shape)}")
        if self.labels is not None:
            if isinstance(self.labels, (str, int)) or not len(self.labels):
                raise TargetError("MultiLabel: labels must be a non-empty list of indices or names, "
                                  f"got {self.labels!r}")
            picked = [resolve_classes(label, logits, labels) for label in self.labels]
            return torch.stack(picked, dim=1), None
        present = torch.sigmoid(logits.float()) >= self.threshold
        counts = present.sum(dim=1).tolist()
        if min(counts) == 0:
            raise TargetError(f"MultiLabel: no label with p >= {self.threshold} in sample(s) "
                              f"{[i for i, c in enumerate(counts) if c == 0]}; lower threshold or name the labels")
        if len(set(counts)) > 1:
            raise TargetError(f"MultiLabel: the samples hold {counts} labels each; explain them one at a time "
                              "or name the labels")
        order = torch.where(present, logits, torch.full_like(logits, -torch.inf)).argsort(dim=1, descending=True)
        return order[:, :counts[0]], None

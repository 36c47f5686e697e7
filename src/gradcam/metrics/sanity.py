"""Sanity checks: a map that explains the model must change when the model's weights do.

Model parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, NeurIPS 2018, "Sanity
checks for saliency maps"), in quantus 0.6's ``MPRT`` protocol: on a copy of the model (the user's is
never touched), the layers with parameters are re-initialised one more at a time, from the output down
(``order="top_down"``, cascading) or one at a time (``"independent"``), each with ``reset_parameters()``
after ``torch.manual_seed(seed + 1)``; after each, the maps of the same classes are compared with the
trained model's by Spearman's rank correlation of their absolute values (quantus's ``abs=True``; ties get
their average rank, as scipy's; NaN where a map is constant, all zero say). A faithful
method's correlation falls as the randomisation goes down; one that stays high shows the input, not
the model (the paper's finding for guided backpropagation).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from gradcam.engine.methods import create_method
from gradcam.errors import OptionError

ORDERS = ("top_down", "independent", "bottom_up")


@dataclass
class RandomisationResult:
    layers: list[str]  # the layer re-initialised at each step (in the order of the steps)
    similarity: torch.Tensor  # (steps, B) Spearman rank correlation with the trained model's maps
    trained: torch.Tensor | None = None  # (B, *spatial) the trained model's maps (un-normalised)
    kept: torch.Tensor | None = None  # (B, *spatial) the maps after step ``keep`` (when asked)

    @property
    def last(self) -> torch.Tensor:
        """(B,) the correlation once the last layer of the order is re-initialised too."""
        return self.similarity[-1]


class ParameterRandomisation:
    """``ParameterRandomisation("gradcam")(model, x, targets)`` -> a :class:`RandomisationResult`.
    ``layer`` and ``options`` go to the method (by layer name: it is found again in the copy);
    ``layer_by_layer=False`` compares the maps once, when every layer is re-initialised (quantus's
    ``skip_layers=True``; for ``top_down`` and ``bottom_up``)."""

    def __init__(self, method: str = "gradcam", *, layer: Any = None, order: str = "top_down", seed: int = 42,
                 layer_by_layer: bool = True, **options: Any):
        if order not in ORDERS:
            raise OptionError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if layer is not None and not isinstance(layer, (str, list, tuple)):
            raise OptionError("layer must be a layer name (or names): it is looked up again in the model's copy")
        if not layer_by_layer and order == "independent":
            raise OptionError("layer_by_layer=False needs a cascading order: top_down or bottom_up")
        self.method, self.layer, self.order, self.seed, self.options = method, layer, order, int(seed), options
        self.layer_by_layer = layer_by_layer

    def __call__(self, model: nn.Module, x: torch.Tensor, targets: Any = None, *, keep: int | None = None,
                 on_step: Callable[[str], None] | None = None) -> RandomisationResult:
        """``keep``: also return the maps after that step (1-based), e.g. to show them; ``on_step(layer)``
        is called after each layer is re-initialised (a progress bar)."""
        trained = self._maps(model, x, targets)
        classes = trained.targets
        copied = copy.deepcopy(model)
        original = copy.deepcopy(copied.state_dict()) if self.order == "independent" else None
        modules = [(name, m) for name, m in copied.named_modules() if hasattr(m, "reset_parameters")]
        if self.order == "top_down":
            modules = modules[::-1]
        if not modules:
            raise OptionError("the model has no layer with parameters to re-initialise")
        names, similarity, kept = [], [], None
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            for step, (name, module) in enumerate(modules, 1):
                if original is not None:
                    copied.load_state_dict(original)
                torch.manual_seed(self.seed + 1)
                module.reset_parameters()
                if self.layer_by_layer or step == len(modules):
                    maps = self._maps(copied, x, classes).maps
                    names.append(name)
                    similarity.append(spearman(maps.abs(), trained.maps.abs()))
                    kept = maps if step == keep else kept
                if on_step is not None:
                    on_step(name)
        return RandomisationResult(names, torch.stack(similarity), trained.maps, kept)

    def layers_of(self, model: nn.Module) -> list[str]:
        """The names of the layers re-initialised, in the order of the steps."""
        names = [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")]
        return names[::-1] if self.order == "top_down" else names

    def _maps(self, model: nn.Module, x: torch.Tensor, targets: Any):
        return create_method(self.method, model, self.layer, **self.options)(x, targets, normalize="none")


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) Spearman's rank correlation of each sample's values in ``a`` and ``b`` (ties: average ranks;
    NaN where a map is constant, as scipy gives)."""
    ra, rb = _average_ranks(a.flatten(1).double()), _average_ranks(b.flatten(1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return ((ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))).float()


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N along the last axis, tied values sharing the mean of their ranks."""
    ranks = torch.empty_like(values)
    for i, row in enumerate(values):
        ordered, order = row.sort()
        _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        ranks[i, order] = ((ends - counts + 1 + ends) / 2)[group]
    return ranks

"""The lifecycle every CAM method shares: checks, hooks, one forward, gradients, maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .. import functional as Fn
from ..errors import LayerError, ModelError, OptionError
from ..hooks import ActivationCapture
from ..layers import LayerSpec, resolve_layers
from ..targets import TargetSpec, custom_scores, extract_logits, resolve_classes


@dataclass
class CAMOutput:
    """Result of one call.

    maps:    float32 (B, H, W) at the input's resolution, normalised per image
             ((B, k, H, W) with ``top_k=k``).
    raw:     (B, h, w) un-normalised map at the layer's resolution (a tuple, one per layer, when
             several layers are explained).
    targets: LongTensor (B,) classes explained ((B, k) with top_k; -1 for a callable target).
    logits:  (B, num_classes) scores of the same forward pass.
    layers:  names of the target layers.
    """

    maps: torch.Tensor
    raw: Any
    targets: torch.Tensor
    logits: torch.Tensor
    layers: list[str]

    @property
    def probabilities(self) -> torch.Tensor:
        """Softmax probability of each explained class (same shape as ``targets``)."""
        probs = self.logits.float().softmax(dim=-1)
        index = self.targets.clamp_min(0)
        picked = probs.gather(1, index if index.dim() == 2 else index[:, None])
        picked = picked if index.dim() == 2 else picked[:, 0]
        return torch.where(self.targets >= 0, picked, torch.full_like(picked, float("nan")))


class CAMMethod:
    """Base class of gradient-based CAM methods: subclasses define :meth:`combine` only.

    The model is run once, in eval mode, with no autograd graph before the first target layer; the
    gradients of the target scores are taken with ``torch.autograd.grad`` with respect to the captured
    activations only (no parameter gradient is computed). The caller's train/eval modes, grad mode,
    ``requires_grad`` and ``.grad`` are left as they were; hooks live only during a call.
    """

    name = "base"

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec = None,
        *,
        labels: Sequence[str] | None = None,
        normalize: str = "minmax",
    ):
        if hasattr(model, "module") and hasattr(model, "preprocess"):  # a ModelBundle
            labels = labels if labels is not None else model.labels
            model = model.module
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        Fn.check_normalize(normalize)
        self.model = model
        self.labels = list(labels) if labels is not None else None
        self.normalize = normalize
        self._layer_spec = target_layer
        self._layers: list[tuple[str, nn.Module]] | None = None

    def __enter__(self) -> "CAMMethod":
        return self

    def __exit__(self, *exc) -> bool:
        return False  # nothing outlives a call; exceptions propagate unchanged

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self._layers] if self._layers else []

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) activations and gradients (float32) -> raw map (B, h, w)."""
        raise NotImplementedError

    def __call__(
        self,
        x: torch.Tensor,
        targets: TargetSpec = None,
        *,
        top_k: int | None = None,
        normalize: str | None = None,
    ) -> CAMOutput:
        normalize = self.normalize if normalize is None else normalize
        Fn.check_normalize(normalize)
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise OptionError(f"input must be a (B, C, H, W) tensor, got {shape}")
        if top_k is not None and (top_k < 1 or targets is not None):
            raise OptionError("top_k must be >= 1 and cannot be combined with targets")
        if self._layers is None:
            self._layers = resolve_layers(self.model, self._layer_spec, x)
        # Scores and gradients need autograd even when the caller is in no_grad or inference mode;
        # both contexts restore the caller's modes on exit.
        with torch.inference_mode(False), torch.enable_grad():
            return self._explain(x, targets, top_k, normalize)

    def _explain(self, x, targets, top_k, normalize) -> CAMOutput:
        output, activations = self._forward(x)
        scores = extract_logits(output)  # still carries the graph from the target layers
        logits = scores.detach()
        size = x.shape[-2:]
        if top_k is not None:
            classes = logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices
            ranks = range(classes.shape[1])
            raws = [self._raw_maps(class_scores(scores, classes[:, r]), activations, last=r == ranks[-1])
                    for r in ranks]
            maps = torch.stack([Fn.fuse(raw, size, normalize) for raw in raws], dim=1)
            per_layer = [torch.stack(layer_raws, dim=1) for layer_raws in zip(*raws)]
            return self._output(maps, per_layer, classes, logits)

        if callable(targets) and not isinstance(targets, torch.Tensor):
            target_scores = custom_scores(targets, output, x.shape[0])
            classes = torch.full((x.shape[0],), -1, dtype=torch.long, device=logits.device)
        else:
            classes = resolve_classes(targets, logits, self.labels)
            target_scores = class_scores(scores, classes)
        raws = self._raw_maps(target_scores, activations, last=True)
        return self._output(Fn.fuse(raws, size, normalize), raws, classes, logits)

    def _output(self, maps, raws, classes, logits) -> CAMOutput:
        raw = raws[0] if len(raws) == 1 else tuple(raws)
        return CAMOutput(maps, raw, classes, logits, self.layer_names)

    def _forward(self, x: torch.Tensor) -> tuple[Any, list[torch.Tensor]]:
        """One forward pass in eval mode with the target layers captured; the caller's state restored."""
        modes = {module: module.training for module in self.model.modules()}
        try:
            self.model.eval()
            with ActivationCapture(self._layers) as capture:
                torch.set_grad_enabled(False)  # the first target layer's hook turns it back on
                output = self.model(x)
        finally:
            torch.set_grad_enabled(True)
            for module, mode in modes.items():
                module.training = mode
        return output, capture.checked()

    def _raw_maps(self, scores: torch.Tensor, activations, *, last: bool) -> list[torch.Tensor]:
        """Raw maps (B, h, w), one per layer, from the gradients of the (B,) target scores."""
        if not scores.requires_grad:
            raise LayerError(f"the target score does not depend on layer(s) {', '.join(self.layer_names)}")
        grads = torch.autograd.grad(scores.sum(), activations, retain_graph=not last, allow_unused=True)
        maps = []
        for (name, _), act, grad in zip(self._layers, activations, grads):
            if grad is None:
                raise LayerError(f"the target score does not depend on layer {name!r}")
            maps.append(self.combine(act.detach().float(), grad.float()))
        return maps


def class_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """y^c of each sample: (B, num_classes) logits and (B,) classes -> (B,)."""
    return logits.gather(1, classes[:, None])[:, 0]

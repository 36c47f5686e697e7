"""Guided Backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller, ICLR-W 2015, "Striving for
Simplicity: The All Convolutional Net")."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode, temporary_hooks
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target

GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


def _guide(module, inputs, output):
    # After the ReLU, whose own backward keeps positive inputs (x > 0 ⟺ relu(x) > 0, so this holds for
    # in-place ReLUs too), keep positive gradients: ∂/∂x = 1[x > 0] · ReLU(∂/∂out).
    return _PositiveGradient.apply(output)


def _activations(model: nn.Module) -> str:
    """What the model uses instead of ReLU modules, for the warning: its activation modules, if any."""
    found = sorted({type(m).__name__ for m in model.modules()
                    if type(m).__module__.startswith("torch.nn.modules.activation")})
    return "activation modules found: " + ", ".join(found) if found else \
        "no activation modules: functional ones such as F.relu are not guided"


@register_method("guided-backprop")
class GuidedBackprop(CAMMethod):
    """Guided Backprop: the input gradient with every ReLU passing only positive gradients to positive inputs.

    R^(l) = 1[f^(l) > 0] · 1[R^(l+1) > 0] · R^(l+1) at each ReLU (and ReLU6) module; the map is
    ∂y^c/∂x, (B, 3, H, W) at the input's resolution. Functional ReLUs (``F.relu``) are not guided.
    No target layer.
    """

    needs_layer = False
    output_kind = "image"
    channels_last_by_default = False
    takes_reshape = False  # no target layer

    def forward(self, x: torch.Tensor) -> Pass:
        x = x.detach().clone().requires_grad_(True)
        guided = [m for m in self.model.modules() if isinstance(m, GUIDED_ACTIVATIONS)]
        if not guided:
            warnings.warn(f"{self.name}: {type(self.model).__name__} has no nn.ReLU or nn.ReLU6 module to guide "
                          f"({_activations(self.model)}): the map is the plain input gradient", stacklevel=4)
        with temporary_hooks((m, _guide) for m in guided), eval_mode(self.model), self.autocast(x.device):
            output = self.run_model(x)
        return Pass(x, output, [])

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        maps = []
        for i, target in enumerate(targets):
            scores = target.scores(run.output)
            (grad,), scale = self._gradients(scores, [run.x], last=i == len(targets) - 1)
            maps.append([grad.float() / scale])
        return maps

    def finish(self, raws: list[torch.Tensor], size, normalize: str) -> torch.Tensor:
        return Fn.normalize(Fn.upsample(raws[0], size), normalize)  # (B, 3, H, W), scaled over all channels

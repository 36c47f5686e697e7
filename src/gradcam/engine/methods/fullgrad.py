"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, "Full-Gradient Representation for Neural Network
Visualization")."""

from __future__ import annotations

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode, temporary_hooks
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def effective_bias(module: nn.Module, inputs: tuple) -> torch.Tensor | None:
    """The bias b of a biased layer, as a (C,) vector: a convolution's own, or batch norm's
    β − γ·μ/√(σ² + ε) (the layer is y = (γ/√(σ² + ε))·x + b; the running statistics in eval mode, the
    batch's own where the layer keeps none). None for a layer without one."""
    if isinstance(module, CONVOLUTIONS):
        return None if module.bias is None else module.bias.detach().float()
    if module.running_mean is not None and not module.training:
        mean, var = module.running_mean.float(), module.running_var.float()
    else:  # batch statistics, as the layer itself normalises
        x = inputs[0].detach().float()
        axes = [0, *range(2, x.dim())]
        mean, var = x.mean(dim=axes), x.var(dim=axes, unbiased=False)
    scale = torch.rsqrt(var + module.eps)
    gamma = module.weight.detach().float() if module.weight is not None else torch.ones_like(mean)
    beta = module.bias.detach().float() if module.bias is not None else torch.zeros_like(mean)
    return beta - gamma * mean * scale


def psi(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """FullGrad's post-processing of (B, C, *spatial) maps before the upsampling: |·|, then each
    (sample, channel) map min-max scaled to [0, 1] (a constant one becomes 0)."""
    maps = maps.abs()
    flat = maps.flatten(2)
    lo = flat.amin(dim=2).view(*maps.shape[:2], *[1] * (maps.dim() - 2))
    hi = flat.amax(dim=2).view(*maps.shape[:2], *[1] * (maps.dim() - 2))
    return (maps - lo) / (hi - lo + eps)


@register_method("fullgrad")
class FullGrad(CAMMethod):
    """FullGrad: the input-gradient term plus every convolution's and batch norm's bias-gradient maps.

    S(x) = ψ(∇_x f^c ⊙ x) + Σ_l Σ_k ψ((∇_{b_l} f^c ⊙ b_l)_k) (Srinivas & Fleuret, NeurIPS 2019, eq. 5),
    ψ = |·|, min-max per channel, bilinear upsampling to the input; the bias-gradient of a layer with
    output y = W·x + b is ∂f/∂y ⊙ b at each position, b of batch norm its effective bias β − γ·μ/σ.
    One forward pass and one ``autograd.grad`` with respect to the input and the biased layers' outputs
    (no parameter gradient). No target layer: every ``nn.Conv{1,2,3}d`` with a bias and every
    ``nn.BatchNorm{1,2,3}d`` (subclasses too) is used. Linear layers' biases are left out, as in the
    paper's maps: a classifier head's has no spatial extent (ψ of a constant is 0). The colour channels
    of the input term are scaled one by one, as every bias channel is (the paper's Σ_k ψ; pytorch-grad-cam
    does the same; the authors' code scales each layer's whole tensor at once). Unlike pytorch-grad-cam,
    batch norm without affine parameters counts too (its effective bias −μ/σ), and the maps stay tensors.
    """

    needs_layer = False
    takes_reshape = False  # no target layer
    # ψ scales every channel to [0, 1], so a nearly flat channel amplifies rounding: the input runs as given
    channels_last_by_default = False

    def forward(self, x: torch.Tensor) -> Pass:
        x = x.detach().clone().requires_grad_(True)
        captured: list[tuple[torch.Tensor, torch.Tensor]] = []

        def hook(module, inputs, output):
            bias = effective_bias(module, inputs)
            if bias is None or not isinstance(output, torch.Tensor) or not output.requires_grad:
                return None
            # the network goes on with a copy: an in-place operation after the layer (ResNet's relu_)
            # would otherwise make `output` the activation's, and its gradient the wrong one
            captured.append((output, bias))
            return output.clone()

        biased = [m for m in self.model.modules() if isinstance(m, CONVOLUTIONS + BATCH_NORMS)]
        with temporary_hooks((m, hook) for m in biased), eval_mode(self.model), self.autocast(x.device):
            output = self.run_model(x)
        return Pass(x, output, [], extra={"biased": captured})

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        outputs = [out for out, _ in run.extra["biased"]]
        biases = [b for _, b in run.extra["biased"]]
        maps = []
        for i, target in enumerate(targets):
            scores = target.scores(run.output)
            grads, scale = self._gradients(scores, [run.x, *outputs], last=i == len(targets) - 1)
            maps.append([self.combine_terms(run.x, grads[0], grads[1:], biases, scale)])
        return maps

    @staticmethod
    def combine_terms(x: torch.Tensor, input_grad: torch.Tensor | None, grads, biases, scale: float = 1.0
                      ) -> torch.Tensor:
        """(B, *spatial) S(x) from the input's gradient and each biased layer's output gradient."""
        size = x.shape[2:]
        if input_grad is None:
            input_grad = torch.zeros_like(x)
        total = psi(input_grad.float() / scale * x.detach().float()).sum(dim=1)
        by_size: dict[tuple, torch.Tensor] = {}  # Σ_k ψ(·) at each resolution, upsampled once (bilinear is linear)
        for grad, bias in zip(grads, biases):
            if grad is None:  # a layer the score does not depend on: ψ(0) = 0
                continue
            terms = psi(grad.float() / scale * bias.view(1, -1, *[1] * (grad.dim() - 2))).sum(dim=1)
            key = tuple(terms.shape[1:])
            by_size[key] = terms if key not in by_size else by_size[key] + terms
        for terms in by_size.values():
            total = total + Fn.upsample(terms, size)
        return total

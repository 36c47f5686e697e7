"""CAM (Zhou, Khosla, Lapedriza, Oliva & Torralba, CVPR 2016, "Learning Deep Features for
Discriminative Localization")."""

from __future__ import annotations

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine import precision as precision_rules
from gradcam.engine.capture import temporary_hooks
from gradcam.engine.layers import probe_input
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target, extract_logits
from gradcam.errors import LayerError, TargetError


@register_method("cam")
class CAM(CAMMethod):
    """CAM: the classifier's own weights, for networks ending in global average pooling + one linear layer.

    M_c = Σ_k w_k^c A^k, w^c the linear layer's row for class c (no gradient; no ReLU, as in the paper).
    The head is checked on every call: the logits must equal W · mean_ij(A) + b.
    """

    uses_gradients = False
    single_layer = True
    needs_linear_head = True

    def unsuitable(self, x: torch.Tensor | None = None) -> str:
        x = probe_input(self.model) if x is None else x
        why = super().unsuitable(x)
        if why:
            return why
        with torch.enable_grad():
            run = self.forward(x)
        acts = self.as_map(run.activations[0]).float()
        mismatch = _head_mismatch(run.extra["linear"], acts, extract_logits(run.output),
                                  precision_rules.autocast_dtype(self.precision, acts.device))
        return f"CAM needs global average pooling + one linear layer after {self.layer_names[0]!r}: {mismatch}" \
            if mismatch else ""

    def forward(self, x: torch.Tensor) -> Pass:
        calls: list[nn.Linear] = []
        with temporary_hooks((m, lambda m, i, o: calls.append(m)) for m in self.model.modules()
                             if isinstance(m, nn.Linear)):
            run = super().forward(x)
        run.extra["linear"] = calls[-1] if calls else None
        return run

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        if any(t.fn is not None for t in targets):
            raise TargetError("CAM needs a class index: a callable target has no row in the classifier")
        if len(run.activations) != 1:
            raise LayerError("CAM explains the one layer that feeds the global average pooling; give one layer")
        acts = self.as_map(run.activations[0]).float()
        weight = self._classifier_weight(run, acts)
        return [[Fn.weighted_sum(weight[t.classes], acts)] for t in targets]

    def _classifier_weight(self, run: Pass, acts: torch.Tensor) -> torch.Tensor:
        linear = run.extra["linear"]
        logits = extract_logits(run.output)
        why = _head_mismatch(linear, acts, logits, precision_rules.autocast_dtype(self.precision, acts.device))
        if why:
            raise LayerError(
                f"CAM needs layer {self.layer_names[0]!r} to be followed only by global average pooling and one "
                f"linear layer (logits = W·mean(A) + b); {why}. Use gradcam, which needs no such head."
            )
        return linear.weight.detach().float()


@torch.no_grad()
def _head_mismatch(linear, acts: torch.Tensor, logits, low: torch.dtype | None = None) -> str:
    """'' when logits == linear(mean over positions of acts), else the reason it is not; ``low``: the
    dtype the pass ran in, when not float32."""
    if linear is None:
        return "the model has no nn.Linear layer"
    if linear.in_features != acts.shape[1]:
        return f"its last linear layer takes {linear.in_features} features, the layer has {acts.shape[1]} channels"
    if tuple(logits.shape) != (acts.shape[0], linear.out_features):
        return "the model's output is not the last linear layer's output"
    expected = torch.nn.functional.linear(acts.mean(dim=Fn.spatial_axes(acts)), linear.weight.float(),
                                          None if linear.bias is None else linear.bias.float())
    scale = expected.abs().max().clamp_min(1e-6)
    # the logits of a bf16 or fp16 pass were rounded to that precision: a few of its ulps, not float32's 1e-3
    tolerance = 1e-3 if low is None else max(1e-3, 4 * torch.finfo(low).eps)
    if not torch.allclose(logits.detach().float(), expected, rtol=tolerance, atol=tolerance * float(scale)):
        return "the logits are not W·mean(A) + b (something else lies between the layer and the classifier)"
    return ""

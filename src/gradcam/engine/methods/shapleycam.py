"""ShapleyCAM (Cai, 2025, "CAMs as Shapley Value-based Explainers", arXiv 2501.06261)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine import precision as precision_rules
from gradcam.engine.capture import detached, like, tensors_of
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import LayerError


@register_method("shapleycam")
class ShapleyCAM(CAMMethod):
    """ShapleyCAM: channel weights from the gradient and the Hessian, a second-order Shapley value estimate.

    With g = ∂y^c/∂A and H = ∂²y^c/∂A², the second-order Taylor expansion of y^c about A gives each
    activation the contribution A ⊙ (g − ½ H A) to y^c(A) − y^c(0) (Cai 2025, arXiv 2501.06261);
    ShapleyCAM pools it like Grad-CAM: w_k^c = (1/Z) Σ_ij (g − ½ H A)^k_ij, L^c = ReLU(Σ_k w_k^c A^k), as
    pytorch-grad-cam's ``ShapleyCAM``. H A is one Hessian-vector product: the gradient is taken with a
    graph (create_graph) of the part of the network after the target layers only, then differentiated
    again with A as the vector. Where the network after the layer is piecewise linear in A (ReLUs,
    pooling, a linear head) and the target is a logit, H A = 0 and ShapleyCAM is Grad-CAM; the paper
    pairs it with a softmax-based target such as ReST, y^c + log softmax(y)^c (pass it as a callable).
    The model runs with PyTorch's math attention kernel: the fused ones (flash, memory-efficient) have
    no second derivative.
    """

    def run_model(self, x: torch.Tensor):
        with math_attention():
            return super().run_model(x)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        return [self._shapley_maps(target.scores(run.output), run.activations, last=i == len(targets) - 1)
                for i, target in enumerate(targets)]

    def _shapley_maps(self, scores: torch.Tensor, activations, *, last: bool) -> list[torch.Tensor]:
        if not scores.requires_grad:
            raise LayerError(f"the target score does not depend on layer(s) {', '.join(self.layer_names)}")
        per_layer = [tensors_of(act) for act in activations]
        leaves = [t for tensors in per_layer for t in tensors if t.requires_grad]
        grads, products, scale = self._gradient_and_product(scores, leaves, last=last)
        given = iter(zip(grads, products))
        maps = []
        for i, ((name, _), act, tensors) in enumerate(zip(self._layers, activations, per_layer)):
            pairs = [next(given) if t.requires_grad else (None, None) for t in tensors]
            if all(g is None for g, _ in pairs):
                raise LayerError(f"the target score does not depend on layer {name!r}")
            a = self.as_map(detached(act), i).float()
            g = self.as_map(like(act, [g for g, _ in pairs]), i).float() / scale
            ha = self.as_map(like(act, [h for _, h in pairs]), i).float() / scale
            maps.append(Fn.relu(Fn.weighted_sum(Fn.gap_weights(g - 0.5 * ha), a)))
        return maps

    def _gradient_and_product(self, scores: torch.Tensor, leaves: list[torch.Tensor], *, last: bool):
        """(∂s/∂A, H A, scale) for s the summed scores, both multiplied by ``scale`` (float16's, as in
        :meth:`CAMMethod._gradients`). H A is the vector-Jacobian product of the gradient with A (H is
        symmetric); a gradient that is constant in A (a linear head) gives H A = 0."""
        dtype = precision_rules.autocast_dtype(self.precision, scores.device)
        scale = precision_rules.gradient_scale(scores, dtype)
        while True:
            retry = dtype is torch.float16 and scale > 1.0
            grads = torch.autograd.grad(scores.sum() * scale, leaves, create_graph=True, allow_unused=True)
            curved = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            products = [None] * len(leaves)
            if curved:
                found = torch.autograd.grad([grads[i] for i in curved], [leaves[i] for i in curved],
                                            grad_outputs=[leaves[i].detach() for i in curved],
                                            retain_graph=retry or not last, allow_unused=True)
                for i, h in zip(curved, found):
                    products[i] = None if h is None else h.detach()
            grads = [None if g is None else g.detach() for g in grads]
            products = [h if h is not None or g is None else torch.zeros_like(g) for g, h in zip(grads, products)]
            finite = all(t is None or torch.isfinite(t).all() for t in (*grads, *products))
            if not retry or finite:
                return grads, products, scale
            scale /= 2.0**8


def math_attention():
    """A context in which ``scaled_dot_product_attention`` runs its math kernel (twice differentiable)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True)
    return sdpa_kernel([SDPBackend.MATH])

"""Guided Grad-CAM (Selvaraju et al., ICCV 2017, section 3.1)."""

from __future__ import annotations

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.methods.gradcam import GradCAM
from gradcam.engine.methods.guided_backprop import GuidedBackprop
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target


@register_method("guided-gradcam")
class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM; pixel-sharp and class-discriminative.

    G^c = ∂y^c/∂x (guided) ⊙ Up(L^c_Grad-CAM), bilinear upsampling; (B, 3, H, W).
    Two passes: one for Grad-CAM, one with guided ReLUs.
    """

    output_kind = "image"
    channels_last_by_default = False

    def __init__(self, model, target_layer=None, **options):
        super().__init__(model, target_layer, **options)
        self._guided = GuidedBackprop(self.model, labels=self.labels, precision=self.precision,
                                      memory_format=self.memory_format)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        cams = super().raw_maps(run, targets)
        self._guided._forward_args, self._guided._forward_kwargs = self._forward_args, self._forward_kwargs
        guided = self._guided.raw_maps(self._guided.forward(run.x), targets)
        size = run.x.shape[2:]
        return [[g[0] * Fn.fuse(cam, size, "none")[:, None]] for cam, g in zip(cams, guided)]

    finish = GuidedBackprop.finish  # (B, 3, H, W) maps

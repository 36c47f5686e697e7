"""Layers the engine cannot read as (B, C, h, w) maps of the input are errors, never silent maps.

A vision transformer's tokens (B, N, C), its attention tensors (B, heads, N, d) and a Swin or MambaOut
stage's channels-last (B, h, w, C) output used to be taken for feature maps and stretched over the photo.
"""

from __future__ import annotations

import pytest
import torch

import gradcam
from gradcam.engine.capture import is_feature_map

timm = pytest.importorskip("timm")


def _model(name: str):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@pytest.mark.parametrize("name, later", [("vit_tiny_patch16_224", "(1, 197, 192)"),
                                         ("swin_tiny_patch4_window7_224", "(1, 7, 7, 768)")])
def test_transformers_get_no_automatic_layer_but_a_clear_error(name, later):
    model = _model(name)
    with pytest.raises(gradcam.LayerError, match="token or channels-last") as error:
        gradcam.GradCAM(model)(torch.randn(1, 3, 224, 224))
    assert later in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, layer", [("vit_tiny_patch16_224", "blocks.11.attn.k_norm"),
                                         ("swin_tiny_patch4_window7_224", "norm")])
def test_a_named_layer_that_is_not_a_map_of_the_input_is_an_error(name, layer):
    model = _model(name)
    with pytest.raises(gradcam.LayerError, match="not a \\(B, C, h, w\\) feature map of the image"):
        gradcam.GradCAM(model, layer)(torch.randn(1, 3, 224, 224))


def test_convolution_networks_keep_their_automatic_layer():
    assert gradcam.auto_layer(_model("resnet18"), torch.randn(1, 3, 224, 160)) == "layer4"
    assert gradcam.auto_layer(_model("convnext_atto"), torch.randn(1, 3, 224, 224)) == "norm_pre"


def test_what_counts_as_a_feature_map():
    assert is_feature_map((1, 512, 7, 7), (224, 224)) and is_feature_map((1, 512, 7, 10), (224, 320))
    assert is_feature_map((1, 8, 16, 16), (16, 16))  # stride 1
    assert not is_feature_map((1, 3, 197, 64), (224, 224))  # ViT attention: heads, tokens, head dim
    assert not is_feature_map((1, 7, 7, 768), (224, 224))  # channels-last stage
    assert not is_feature_map((1, 56, 56, 96), (224, 224))  # channels-last, width smaller than the image
    assert not is_feature_map((1, 197, 192), (224, 224))  # tokens

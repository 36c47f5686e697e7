"""Layers the engine cannot read as (B, C, h, w) maps of the input are errors, never silent maps.

A vision transformer's tokens (B, N, C), its attention tensors (B, heads, N, d) and a Swin or MambaOut
stage's channels-last (B, h, w, C) output used to be taken for feature maps and stretched over the photo.
"""

from __future__ import annotations

import pytest
import torch

import gradcam
from gradcam.engine.layers import auto_layer_reason
from gradcam.engine.layouts import Layout, find_layout, is_feature_map

timm = pytest.importorskip("timm")


def _model(name: str):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@pytest.mark.parametrize("name, layer", [("swin_tiny_patch4_window7_224", "norm"), ("mambaout_femto", "stages")])
def test_channels_last_networks_are_read_automatically(name, layer):
    """Swin and MambaOut stages are (B, h, w, C): the automatic layer is their last one, read channels-last,
    and gives the same map as the explicit permute."""
    model = _model(name)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    auto = gradcam.GradCAM(model)(x, normalize="none")
    explicit = gradcam.GradCAM(model, layer, reshape=_channels_last_to_map)(x, targets=auto.targets, normalize="none")
    assert auto.layers == [layer] and auto.raw.shape == (2, 7, 7)
    assert float(auto.raw.max()) > 0
    assert torch.allclose(auto.raw, explicit.raw, atol=1e-6 * float(explicit.raw.abs().max()))
    assert "channels-last" in auto_layer_reason(model, x)


@pytest.mark.parametrize("name, layer, found", [
    ("vit_tiny_patch16_224", "blocks.11.attn.k_norm", "an attention tensor"),
    ("vit_tiny_patch16_224", "head", "one vector per sample"),
    ("hiera_tiny_224", "blocks.11.attn", "a token sequence whose patch grid is unknown"),
])
def test_a_named_layer_that_is_not_a_map_of_the_input_is_an_error(name, layer, found):
    model = _model(name)
    with pytest.raises(gradcam.LayerError, match="not a \\(B, C, h, w\\) feature map of the input") as error:
        gradcam.GradCAM(model, layer)(torch.randn(1, 3, 224, 224))
    assert found in str(error.value) and "\n" not in str(error.value)
    if name.startswith("vit"):  # it names the layer that would work
        assert "'blocks.11.norm1'" in str(error.value)


@pytest.mark.parametrize("name", ["hiera_tiny_224", "twins_svt_small"])
def test_token_networks_of_unknown_layout_get_no_automatic_layer_but_a_clear_error(name):
    """Hiera orders its tokens by mask unit, Twins declares no prefix tokens: the engine cannot know how
    their tokens lie on the image, so it picks none rather than guess."""
    with pytest.raises(gradcam.LayerError, match="no layer can be chosen automatically") as error:
        gradcam.GradCAM(_model(name))(torch.randn(1, 3, 224, 224))
    assert "(1, 49, " in str(error.value) and "\n" not in str(error.value)


def test_convolution_networks_keep_their_automatic_layer():
    assert gradcam.auto_layer(_model("resnet18"), torch.randn(1, 3, 224, 160)) == "layer4"
    assert gradcam.auto_layer(_model("convnext_atto"), torch.randn(1, 3, 224, 224)) == "norm_pre"


def test_what_counts_as_a_feature_map():
    assert is_feature_map((1, 16, 32), (256,)) and is_feature_map((1, 8, 2, 7, 7), (16, 112, 112))  # signal, clip
    assert not is_feature_map((1, 16, 512), (256,)) and not is_feature_map((1, 8, 7, 7), (16, 112, 112))
    assert is_feature_map((1, 512, 7, 7), (224, 224)) and is_feature_map((1, 512, 7, 10), (224, 320))
    assert is_feature_map((1, 8, 16, 16), (16, 16))  # stride 1
    assert not is_feature_map((1, 3, 197, 64), (224, 224))  # ViT attention: heads, tokens, head dim
    assert not is_feature_map((1, 7, 7, 768), (224, 224))  # channels-last stage
    assert not is_feature_map((1, 56, 56, 96), (224, 224))  # channels-last, width smaller than the image
    assert not is_feature_map((1, 197, 192), (224, 224))  # tokens
    # the same shapes as layouts
    assert find_layout((2, 7, 7, 768), (224, 224), 2).kind == "channels-last"
    assert find_layout((2, 512, 7, 7), (224, 224), 2).kind == "channels-first"
    assert find_layout((2, 512, 7, 7), (224, 224), 1) is None  # not the input's batch (Swin's windows)
    assert find_layout((2, 3, 197, 64), (224, 224), 2) is None
    assert find_layout((2, 196, 64), (224, 224), 2) is None  # tokens of a model that declares no layout
    no_class_token = timm.create_model("vit_tiny_patch16_224", pretrained=False, class_token=False, global_pool="avg")
    assert find_layout((2, 196, 64), (224, 224), 2, no_class_token) == Layout("tokens", 0, (14, 14))
    assert find_layout((2, 197, 64), (224, 224), 2, no_class_token) is None


@pytest.mark.parametrize("name, prefix", [("cait_xxs24_224", 0), ("xcit_nano_12_p16_224", 0),
                                          ("deit_tiny_distilled_patch16_224", 2)])
def test_token_layout_takes_the_models_patch_grid_and_prefix(name, prefix):
    """CaiT's and XCiT's blocks hold the patch tokens only (the class token joins later), DeiT's two
    prefix tokens: the grid is always the model's 14×14, never a 13×15 guessed from N."""
    model = _model(name)
    layout = find_layout((1, 196 + prefix, 8), (224, 224), 1, model)
    assert layout == Layout("tokens", prefix, (14, 14))
    assert gradcam.GradCAM(model)(torch.randn(1, 3, 224, 224)).raw.shape == (1, 14, 14)


def _tokens_to_map(tensor: torch.Tensor, prefix: int = 1, grid: tuple[int, int] = (14, 14)) -> torch.Tensor:
    """(B, prefix + h·w, C) tokens -> (B, C, h, w), the class token dropped."""
    b, _, c = tensor.shape
    return tensor[:, prefix:, :].reshape(b, *grid, c).permute(0, 3, 1, 2)


def _channels_last_to_map(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.parametrize("name, layer, reshape", [
    ("vit_tiny_patch16_224", "blocks.11.norm1", _tokens_to_map),  # pytorch-grad-cam #513: the last block's norm1
    ("swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm1", _channels_last_to_map),
])
@pytest.mark.parametrize("method", ["gradcam", "layercam"])
@pytest.mark.parametrize("ours", ["reshape", "layout"])
def test_reshape_equals_pytorch_grad_cams_reshape_transform(name, layer, reshape, method, ours):
    """A transformer explained through ``reshape=``, or read by its layout with no reshape, gives
    pytorch-grad-cam's map with its documented reshape_transform, on the same layer and class."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from mapcheck import assert_minmax_close
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _model(name)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    ours = gradcam.create_method(method, model, layer, reshape=reshape if ours == "reshape" else None)(
        x, normalize="none")
    cls = {"gradcam": pgc.GradCAM, "layercam": pgc.LayerCAM}[method]
    with cls(model=model, target_layers=[model.get_submodule(layer)], reshape_transform=reshape) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in ours.targets]))
    assert ours.raw.shape == ((2, 14, 14) if name.startswith("vit") else (2, 7, 7))
    assert_minmax_close(ours.maps, ref, 2e-3)


def test_reshape_is_checked():
    model = _model("vit_tiny_patch16_224")
    x = torch.randn(1, 3, 224, 224)
    with pytest.raises(gradcam.LayerError, match="not a \\(B, C, h, w\\) feature map"):  # the wrong grid
        gradcam.GradCAM(model, "blocks.11.norm1", reshape=lambda t: t[:, 1:, :].reshape(1, 4, 49, -1))(x)
    with pytest.raises(gradcam.OptionError, match="ablationcam works on the layer's own layout"):
        gradcam.create_method("ablationcam", model, "blocks.11.norm1", reshape=_tokens_to_map)
    with pytest.raises(gradcam.OptionError, match="callable"):
        gradcam.GradCAM(model, "blocks.11.norm1", reshape="tokens")


def test_score_and_eigen_cam_read_the_reshaped_map_too():
    model = _model("vit_tiny_patch16_224")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    for method, options in (("eigencam", {}), ("scorecam", {"max_channels": 8})):
        out = gradcam.create_method(method, model, "blocks.11.norm1", reshape=_tokens_to_map, **options)(x)
        assert out.raw.shape == (1, 14, 14) and out.maps.shape == (1, 224, 224), method
        assert torch.isfinite(out.raw).all() and float(out.raw.max()) > 0, method
    direct = gradcam.create_method("eigencam", model, "blocks.11.norm1", reshape=_tokens_to_map)(x, normalize="none")
    from gradcam.engine.methods.eigencam import principal_projection

    captured = {}
    handle = model.blocks[11].norm1.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    expected = principal_projection(_tokens_to_map(captured["a"]).float()).clamp_min(0)
    assert torch.allclose(direct.raw, expected, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("name, prefix", [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)])
def test_vision_transformers_are_read_automatically(name, prefix):
    """No layer, no reshape: the last block's norm1, its prefix tokens dropped, the patch grid from the
    model; the same maps as the explicit reshape (which equals pytorch-grad-cam's, above)."""
    model = _model(name)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    auto = gradcam.GradCAM(model)(x, normalize="none")
    explicit = gradcam.GradCAM(model, "blocks.11.norm1", reshape=lambda t: _tokens_to_map(t, prefix))(
        x, targets=auto.targets, normalize="none")
    assert auto.layers == ["blocks.11.norm1"] and auto.raw.shape == (2, 14, 14)
    assert torch.allclose(auto.raw, explicit.raw, atol=1e-6 * float(explicit.raw.abs().max()))
    assert float(auto.raw.max()) > 0


def test_non_square_token_grids_and_torchvision_vit():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True).eval()
    out = gradcam.GradCAM(model)(torch.randn(1, 3, 224, 320))
    assert out.raw.shape == (1, 14, 20) and out.maps.shape == (1, 224, 320)
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    out = gradcam.GradCAM(vit)(torch.randn(1, 3, 224, 224))
    assert out.layers == ["encoder.layers.encoder_layer_11.ln_1"] and out.raw.shape == (1, 14, 14)



def test_a_vit_that_pools_its_patch_tokens_is_explained_at_its_last_block():
    """With global_pool="avg" the head reads every patch token of the last block: that block is the
    layer, and its Grad-CAM is the direct formula on its tokens."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32,
                              num_heads=2, num_classes=3, global_pool="avg", class_token=False).eval()
    assert gradcam.auto_layer(model, torch.zeros(1, 3, 32, 32)) == "blocks.1"
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = gradcam.GradCAM(model)(x, normalize="none")
    store = {}
    handle = model.blocks[1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), store["a"])
    expected = torch.relu((grad.mean(1, keepdim=True) * store["a"]).sum(-1)).reshape(2, 4, 4)
    from mapcheck import assert_relative_close
    assert_relative_close(out.raw, expected.detach(), 1e-5)


def test_a_model_that_says_its_maps_are_channels_last_is_read_so_where_both_readings_fit():
    """(B, 16, 16, 16) of a 32-px input reads either way; a Keras model's wrapper says its maps are NHWC."""
    from torch import nn

    from gradcam.engine.layouts import CHANNELS_FIRST, CHANNELS_LAST, find_layout

    class KerasLike(nn.Module):
        channels_last_activations = True

    assert find_layout((2, 16, 16, 16), (32, 32), 2, nn.Module()).kind == CHANNELS_FIRST
    assert find_layout((2, 16, 16, 16), (32, 32), 2, KerasLike()).kind == CHANNELS_LAST
    assert find_layout((2, 8, 16, 16), (32, 32), 2, KerasLike()).kind == CHANNELS_FIRST  # only one reading fits

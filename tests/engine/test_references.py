"""Grad-CAM against captum's LayerGradCam and pytorch-grad-cam on seeded torchvision models."""

import pytest
import torch
from conftest import seeded_model
from mapcheck import assert_minmax_close, assert_relative_close
from torch import nn

import gradcam

captum_attr = pytest.importorskip("captum.attr")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

FAMILIES = {  # name: (auto layer, input size)
    "resnet18": ("layer4", 96),
    "vgg11": ("features", 96),
    "densenet121": ("features", 96),
    "mobilenet_v3_small": ("features", 128),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    name = request.param
    model = seeded_model(name, seed=0)
    size = FAMILIES[name][1]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    return name, model, x


def test_auto_layer_is_the_usual_choice(family):
    name, model, x = family
    assert gradcam.auto_layer(model, x) == FAMILIES[name][0]


def test_maps_are_not_degenerate(family):
    _, model, x = family
    out = gradcam.GradCAM(model)(x, normalize="none")
    assert (out.raw.flatten(1) > 0).float().mean(1).min() > 0.05  # some of every map is positive
    assert out.logits.std() > 0.1


def test_equals_captum_layer_gradcam(family):
    _, model, x = family
    out = gradcam.GradCAM(model)(x, normalize="none")
    layer = model.get_submodule(out.layers[0])
    raw = captum_attr.LayerGradCam(model, layer).attribute(x, target=out.targets, relu_attributions=True)
    up = captum_attr.LayerAttribution.interpolate(raw, x.shape[-2:], interpolate_mode="bilinear")[:, 0]
    # un-normalised maps, relative to each map's maximum (min-max would amplify float32 rounding on a
    # nearly flat map by max / range)
    assert_relative_close(out.raw, raw[:, 0], 1e-5)
    assert_relative_close(out.maps, up, 1e-5)


def densenet_without_inplace(model: nn.Module) -> nn.Module:
    """The same DenseNet with its final ReLU as a separate, non-in-place step.

    torchvision's DenseNet applies ``F.relu(features, inplace=True)`` to the target layer's output;
    on the CPU pytorch-grad-cam keeps that very tensor, so its activations are overwritten. This
    equivalent model gives pytorch-grad-cam the activations as they were produced."""
    return nn.Sequential(model.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.classifier).eval()


def test_equals_pytorch_grad_cam(family):
    name, model, x = family
    out = gradcam.GradCAM(model)(x, normalize="none")
    ref_model = densenet_without_inplace(model) if name == "densenet121" else model
    layer = ref_model.get_submodule("0" if name == "densenet121" else out.layers[0])
    targets = [ClassifierOutputTarget(int(t)) for t in out.targets]
    with pgc.GradCAM(model=ref_model, target_layers=[layer]) as ref_cam:
        ref = torch.from_numpy(ref_cam(input_tensor=x, targets=targets))
    # pytorch-grad-cam normalises at the layer's resolution, then resizes with OpenCV: compare after
    # the same min-max normalisation at the image's resolution (the tolerance scaled by max / range).
    assert_minmax_close(out.maps, ref, 2e-3)


def test_densenet_does_not_depend_on_inplace_relu():
    """Our DenseNet map equals the map of the equivalent model without the in-place ReLU."""
    model = seeded_model("densenet121")
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    ours = gradcam.GradCAM(model, "features")(x, normalize="none")
    plain = gradcam.GradCAM(densenet_without_inplace(model), "0")(x, targets=ours.targets, normalize="none")
    assert (ours.raw > 0).any()
    assert_relative_close(ours.raw, plain.raw, 1e-5)

"""The CAM family against pytorch-grad-cam, captum and torchcam on seeded torchvision models.

Where a reference departs from the paper we follow the paper, and compare on the ground they share:
- pytorch-grad-cam's Grad-CAM++ adds 1e-6 to α's denominator, which is not small next to 2g² at the
  gradient scale of these models: both explain the score 10⁴·y^c (the same formula, where 1e-6 vanishes).
- its Score-CAM upsamples the masks with align_corners=True; the paper's bilinear upsampling and ours
  use align_corners=False: the comparison gives it the same upsampling.
- its Ablation-CAM ablates with min − 1e7 unless the layer's minimum is 0: compared on ReLU outputs.
- its Eigen-CAM leaves the SVD's sign arbitrary; we orient the component along the total activation:
  compared as |projection|.
- DenseNet: on the CPU it keeps the tensor DenseNet's later in-place ReLU overwrites (see
  test_references.py): compared on the equivalent model without the in-place ReLU.
"""

import pytest
import torch
from conftest import seeded_model
from mapcheck import assert_minmax_close, assert_relative_close
from torch import nn

import gradcam
from gradcam.engine.methods.eigencam import principal_projection

captum_attr = pytest.importorskip("captum.attr")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

FAMILIES = {"resnet18": 64, "vgg11": 64, "densenet121": 64, "mobilenet_v3_small": 96}
GRADIENT = {"gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM, "hirescam": pgc.HiResCAM,
            "layercam": pgc.LayerCAM}


class Scaled:
    """pytorch-grad-cam target: s · y^c."""

    def __init__(self, c: int, s: float):
        self.c, self.s = c, s

    def __call__(self, output):
        return self.s * output[..., self.c]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    name = request.param
    model = seeded_model(name, seed=0)
    size = FAMILIES[name]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    ref_model, layer = model, None
    if name == "densenet121":  # the same network, its final ReLU not in place (see module docstring)
        ref_model = nn.Sequential(model.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  model.classifier).eval()
        layer = ref_model[0]
    return name, model, x, ref_model, layer


def reference(cls, ref_model, layer, x, targets):
    with cls(model=ref_model, target_layers=[layer]) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=targets))


@pytest.mark.parametrize("method", list(GRADIENT))
def test_gradient_methods_equal_pytorch_grad_cam(family, method):
    name, model, x, ref_model, layer = family
    classes = gradcam.GradCAM(model)(x).targets
    scale = 1e4 if method == "gradcam++" else 1.0
    out = gradcam.create_method(method, model)(x, targets=lambda o: scale * o.gather(1, classes[:, None])[:, 0],
                                               normalize="none")
    layer = layer if layer is not None else model.get_submodule(out.layers[0])
    ref = reference(GRADIENT[method], ref_model, layer, x, [Scaled(int(c), scale) for c in classes])
    assert_minmax_close(out.maps, ref, 2e-3)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_scorecam_equals_pytorch_grad_cam(name, monkeypatch):
    model = seeded_model(name)
    x = torch.randn(1, 3, FAMILIES[name], FAMILIES[name], generator=torch.Generator().manual_seed(1))
    out = gradcam.create_method("scorecam", model)(x, normalize="none")
    layer = model.get_submodule(out.layers[0])
    monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d",
                        lambda size: nn.Upsample(size=size, mode="bilinear", align_corners=False))
    ref = reference(pgc.ScoreCAM, model, layer, x, [ClassifierOutputTarget(int(c)) for c in out.targets])
    assert_minmax_close(out.maps, ref, 2e-3)


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_ablationcam_equals_pytorch_grad_cam(name):
    model = seeded_model(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = gradcam.create_method("ablationcam", model)(x, normalize="none")
    layer = model.get_submodule(out.layers[0])
    ref = reference(pgc.AblationCAM, model, layer, x, [ClassifierOutputTarget(int(c)) for c in out.targets])
    assert_minmax_close(out.maps, ref, 2e-3)


def test_eigencam_projection_equals_pytorch_grad_cam(family):
    _, model, x, _, _ = family
    store = {}
    layer = model.get_submodule(gradcam.auto_layer(model, x))
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    ours = principal_projection(store["a"])
    ref = torch.from_numpy(get_2d_projection(store["a"].numpy()))
    assert_relative_close(ours.abs(), ref.abs(), 1e-4)


def test_cam_equals_torchcam():
    torchcam = pytest.importorskip("torchcam.methods")
    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = gradcam.create_method("cam", model, "layer4")(x, normalize="none")
    with torchcam.CAM(model, "layer4", "fc") as extractor:
        ref = extractor(out.targets.tolist(), model(x))[0]
    assert_minmax_close(out.raw, ref, 1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning:captum")
@pytest.mark.parametrize("name", ["resnet18", "vgg11", "mobilenet_v3_small"])
def test_guided_methods_equal_captum(name):
    model = seeded_model(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = gradcam.create_method("guided-backprop", model)(x, normalize="none")
    ref = captum_attr.GuidedBackprop(model).attribute(x, target=out.targets)
    assert torch.allclose(out.maps, ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
    guided = gradcam.create_method("guided-gradcam", model)(x, normalize="none")
    layer = model.get_submodule(guided.layers[0])
    ref = captum_attr.GuidedGradCam(model, layer).attribute(x, target=guided.targets, interpolate_mode="bilinear")
    scale = float(ref.detach().abs().max())
    assert scale > 0 and guided.maps.shape == (2, 3, 64, 64)
    assert (guided.maps - ref).abs().max() <= 1e-4 * scale

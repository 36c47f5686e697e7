"""Channels-last input and low-precision forward passes: the same maps, the model untouched."""

from __future__ import annotations

import pytest
import torch
from conftest import TwoStageCNN, seeded_model, spread_init
from mapcheck import assert_relative_close
from torch import nn

import gradcam
from gradcam.engine import precision as rules
from gradcam.engine.methods import method_options

FAMILIES = {"resnet18": 64, "densenet121": 64, "mobilenet_v3_small": 96, "efficientnet_b0": 64}


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    size = FAMILIES[request.param]
    return seeded_model(request.param), torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _input_layouts(model: nn.Module, run) -> list[bool]:
    """Whether the model's first convolution saw a channels-last input, for each forward of ``run()``."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen = []
    handle = first.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                    and not args[0].is_contiguous()))
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "ablationcam"])
def test_channels_last_by_default_gives_the_contiguous_maps(family, method):
    model, x = family
    options = {"max_channels": 16} if method == "scorecam" else {}
    params = {name: p.stride() for name, p in model.named_parameters()}
    plain = gradcam.create_method(method, model, memory_format="contiguous", **options)(x, normalize="none")
    default = gradcam.create_method(method, model, **options)
    layouts = _input_layouts(model, lambda: default(x, targets=plain.targets, normalize="none"))
    assert layouts and layouts[0], "the default did not give the network a channels-last input"
    fast = default(x, targets=plain.targets, normalize="none")
    # Ablation-CAM's weights are differences of nearly equal scores: rounding shows 10× more there
    assert_relative_close(fast.raw, plain.raw, 1e-4 if method == "ablationcam" else 1e-5)
    assert {name: p.stride() for name, p in model.named_parameters()} == params  # parameters untouched
    assert all(p.is_contiguous() for p in model.parameters())


def test_memory_format_choices(two_stage):
    x = torch.randn(1, 3, 16, 16)
    assert _input_layouts(two_stage, lambda: gradcam.GradCAM(two_stage, "features")(x)) == [False]  # 3 convs
    forced = gradcam.GradCAM(two_stage, "features", memory_format="channels_last")
    assert _input_layouts(two_stage, lambda: forced(x)) == [True]
    guided = gradcam.create_method("guided-backprop", seeded_model("resnet18"))
    assert _input_layouts(guided.model, lambda: guided(torch.randn(1, 3, 32, 32))) == [False]  # ReLU gates
    with pytest.raises(gradcam.OptionError, match="memory_format"):
        gradcam.GradCAM(two_stage, memory_format="nhwc")


def test_bf16_maps_follow_fp32_on_a_seeded_resnet():
    model = seeded_model("resnet18")
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fp32 = gradcam.GradCAM(model)(x, normalize="none")
    bf16 = gradcam.GradCAM(model, precision="bf16")
    # the same classes from the bf16 pass itself, wherever fp32's top two are not a near tie (bf16
    # rounding may flip a tie on another release's kernels)
    top2 = fp32.logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-2 * fp32.logits.abs().amax(dim=1)
    assert int(clear.sum()) >= 2
    assert torch.equal(bf16(x).targets[clear], fp32.targets[clear])
    same = bf16(x, targets=fp32.targets, normalize="none")  # the map of the same class
    assert float(correlation(same.raw, fp32.raw).min()) >= 0.999
    assert same.raw.dtype == same.maps.dtype == torch.float32


def test_cam_in_bf16_reads_its_head_within_bf16_rounding():
    """CAM checks that logits = W·mean(A) + b before it uses W: in bf16 the logits are rounded to bf16's
    precision (0.15 % of their scale here, against float32's 1e-3 tolerance), which is not another head.
    Found on a GPU by the every-method CUDA test; the same on the CPU."""
    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fp32 = gradcam.create_method("cam", model)(x, normalize="none")
    low = gradcam.create_method("cam", model, precision="bf16")
    assert low.unsuitable(x) == ""
    bf16 = low(x, targets=fp32.targets, normalize="none")
    assert float(correlation(bf16.raw, fp32.raw).min()) >= 0.999
    head = nn.Sequential(model, nn.Linear(1000, 10))  # something else between layer4 and the logits
    assert "linear" in gradcam.create_method("cam", head, "0.layer4", precision="bf16").unsuitable(x)


def test_bf16_on_the_bundled_model_and_real_photos():
    """Trained and real: the bundled ImageNet model on two confident photos."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())])
    for method in ("gradcam", "scorecam"):
        options = {"max_channels": 64} if method == "scorecam" else {}
        fp32 = gradcam.create_method(method, bundle.module, **options)(x, normalize="none")
        bf16 = gradcam.create_method(method, bundle.module, precision="bf16", **options)(x, normalize="none")
        assert torch.equal(bf16.targets, fp32.targets), method
        assert float(correlation(bf16.raw, fp32.raw).min()) >= 0.999, method


def test_low_precision_scores_come_from_a_float32_scoring_layer(two_stage):
    """bf16 keeps 8 bits of mantissa: a logit near 100 in bf16 is a multiple of 0.5. The scoring layer
    (the last linear layer) runs in float32, so only the features before it are rounded."""
    model = TwoStageCNN(classes=10).eval()
    with torch.no_grad():
        model.fc.bias.fill_(100.0)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    assert rules.scoring_layer(model) is model.fc
    with torch.no_grad():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model(x).float()  # plain autocast: the scores themselves in bf16
    assert float((rounded - exact).abs().max()) > 0.05
    for method in ("gradcam", "scorecam"):
        out = gradcam.create_method(method, model, "features", precision="bf16")(x)
        assert out.logits.dtype == torch.float32
        assert float((out.logits - exact).abs().max()) < 0.02, method
    # Score-CAM captures A^k and chooses its class in float32; only its masked passes are in bf16
    captured = gradcam.create_method("scorecam", model, "features", precision="bf16")(x).logits
    assert_relative_close(captured, exact, 1e-5)
    assert not model.fc._forward_hooks and not model.fc._forward_pre_hooks  # nothing outlives a call
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")


def test_the_scoring_layer_of_known_families():
    assert rules.scoring_layer(seeded_model("resnet18")).out_features == 1000
    vit = pytest.importorskip("timm").create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7)
    assert rules.scoring_layer(vit) is vit.head
    assert rules.scoring_layer(nn.Sequential(nn.ReLU())) is None  # nothing to keep in float32: plain autocast
    out = gradcam.GradCAM(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1),
                                        nn.Flatten()), "1", precision="bf16")(torch.randn(1, 3, 8, 8))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.maps).all()


class _Tiny(nn.Module):
    """TwoStageCNN whose scores are 1e-6 of its logits: gradients that float16 cannot hold unscaled."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = spread_init(TwoStageCNN(), 0)

    def forward(self, x):
        return self.net(x) * 1e-6


def test_fp16_gradients_do_not_underflow():
    model = _Tiny().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.float16):  # what an unscaled fp16 backward gives: nothing
        out = model(x)
    assert out.dtype == torch.float16
    fp32 = gradcam.GradCAM(model, "net.features")(x, normalize="none")
    fp16 = gradcam.GradCAM(model, "net.features", precision="fp16")(x, targets=fp32.targets, normalize="none")
    assert float(fp16.raw.abs().max()) > 0
    assert float(correlation(fp16.raw, fp32.raw).min()) >= 0.99
    assert_relative_close(fp16.raw, fp32.raw, 0.05)  # the scale is undone: the same magnitudes


def test_gradient_scale():
    assert rules.gradient_scale(torch.tensor([3.0]), torch.bfloat16) == 1.0
    assert rules.gradient_scale(torch.tensor([1e-6]), torch.float16) == 2.0**24
    assert rules.gradient_scale(torch.tensor([8.0, -1024.0]), torch.float16) == 1.0
    assert rules.gradient_scale(torch.tensor([float("nan")]), torch.float16) == 1.0


def test_precision_choices_and_clear_errors(two_stage, monkeypatch, request):
    request.addfinalizer(rules.fast_bf16.cache_clear)  # no monkeypatched answer outlives the test
    with pytest.raises(gradcam.OptionError, match="precision"):
        gradcam.GradCAM(two_stage, precision="fp8")
    with pytest.raises(gradcam.OptionError, match="mps"):
        rules.autocast_dtype("bf16", torch.device("mps"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with pytest.raises(gradcam.OptionError, match="Old GPU has no bfloat16"):
        rules.autocast_dtype("bf16", torch.device("cuda"))
    rules.fast_bf16.cache_clear()
    assert rules.autocast_dtype("auto", torch.device("cuda")) is None  # auto falls back to fp32
    rules.fast_bf16.cache_clear()
    monkeypatch.setattr(rules, "fast_bf16", lambda device: True)
    assert rules.autocast_dtype("auto", torch.device("cpu")) is torch.bfloat16
    assert rules.autocast_dtype("fp32", torch.device("cpu")) is None


# --------------------------------------------------------------------------- on a CUDA device (benchmarks/gpu_check.sh)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_channels_last_on_cuda_gives_the_contiguous_maps(method):
    model = seeded_model("resnet18").cuda()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).cuda()
    options = {"max_channels": 32} if method == "scorecam" else {}
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 convolutions round to 10 bits
        plain = gradcam.create_method(method, model, memory_format="contiguous", **options)(x, normalize="none")
        fast = gradcam.create_method(method, model, **options)(x, targets=plain.targets, normalize="none")
    assert fast.raw.is_cuda and fast.raw.dtype == torch.float32
    assert_relative_close(fast.raw, plain.raw, 1e-4)


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_low_precision_on_cuda_follows_fp32(precision, method):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = seeded_model("resnet18").cuda()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)).cuda()
    options = {"max_channels": 64} if method == "scorecam" else {}
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        fp32 = gradcam.create_method(method, model, **options)(x, normalize="none")
        low = gradcam.create_method(method, model, precision=precision, **options)(x, targets=fp32.targets,
                                                                                  normalize="none")
    assert low.raw.is_cuda and low.raw.dtype == low.logits.dtype == torch.float32
    assert float(correlation(low.raw, fp32.raw).min()) >= 0.999, (precision, method)


@cuda
def test_fp16_gradients_do_not_underflow_on_cuda():
    model = _Tiny().eval().cuda()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)).cuda()
    fp32 = gradcam.GradCAM(model, "net.features")(x, normalize="none")
    fp16 = gradcam.GradCAM(model, "net.features", precision="fp16")(x, targets=fp32.targets, normalize="none")
    assert float(fp16.raw.abs().max()) > 0
    assert_relative_close(fp16.raw, fp32.raw, 0.05)


@cuda
def test_every_registered_method_runs_on_cuda_in_fp32_and_bf16():
    """Every method on the GPU: maps on the device, finite, at the input's size; in bf16 the map follows fp32's
    (correlation, the same classes). A method that declares the model unsuitable is skipped with its reason."""
    model = seeded_model("resnet18").cuda()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).cuda()
    lows = {}
    for name in gradcam.list_methods():
        fp32 = gradcam.create_method(name, model)
        if fp32.unsuitable(x):
            continue
        options = {k: v for k, v in {"max_channels": 32, "masks": 256}.items() if k in method_options(name)}
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            exact = gradcam.create_method(name, model, **options)(x, normalize="none")
            low = gradcam.create_method(name, model, precision="bf16", **options)(x, targets=exact.targets,
                                                                                  normalize="none")
        assert exact.maps.is_cuda and bool(torch.isfinite(exact.maps).all()), name
        assert exact.maps.shape[-2:] == x.shape[-2:] and exact.maps.shape[0] == 2, name
        found = correlation(low.maps.float(), exact.maps.float()) if exact.maps.dim() == 3 else torch.zeros(0)
        if torch.isfinite(found).any():  # a constant map has no correlation
            lows[name] = float(found[torch.isfinite(found)].min())
    print({k: round(v, 4) for k, v in lows.items()})
    assert len(lows) >= 15 and min(lows.values()) >= 0.95, lows

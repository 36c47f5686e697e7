"""Grad-CAM against the paper's formula computed directly, and the engine's hygiene."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TwoStageCNN, seeded_model, spread_init
from mapcheck import assert_relative_close
from torch import nn

import gradcam
from gradcam.errors import GradCAMError, LayerError, TargetError


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        and not getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )


def paper_gradcam(model, layer, x, classes):
    """Naive Grad-CAM: full autograd graph, then eq. 1 and 2 of Selvaraju et al. by hand."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        a = store["a"]
        a.retain_grad()
        logits[torch.arange(len(classes)), classes].sum().backward()
    finally:
        handle.remove()
    alpha = a.grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * a).sum(dim=1)).detach()


def test_tiny_model_equals_closed_form(tiny):
    """y^c = Σ_k w_ck mean(A^k) + b_c, so α_k = w_ck / (h w) exactly."""
    x = torch.tensor([[[[1.0, -2.0, 0.0], [3.0, 0.5, -1.0], [0.0, 2.0, -4.0]]]])
    a = torch.stack([x[0, 0].clamp_min(0), (-x[0, 0]).clamp_min(0)])  # A^1 = relu(x), A^2 = relu(-x)
    for c in range(3):
        w = tiny.fc.weight[c].detach()
        expected = torch.relu(w[0] / 9 * a[0] + w[1] / 9 * a[1])
        with gradcam.GradCAM(tiny, "relu") as cam:
            out = cam(x, targets=c, normalize="none")
        assert torch.allclose(out.raw[0], expected, atol=1e-6)
        assert torch.allclose(out.maps[0], expected, atol=1e-6)  # same resolution, not normalised
        assert out.targets.tolist() == [c]


def test_equals_direct_computation_with_nonlinear_head(two_stage):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 2, 3])
    expected = paper_gradcam(two_stage, two_stage.features, x, classes)
    out = gradcam.GradCAM(two_stage, "features")(x, targets=classes, normalize="none")
    assert expected.abs().max() > 0
    assert torch.allclose(out.raw, expected, atol=1e-6)
    up = F.interpolate(expected[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    minmax = gradcam.GradCAM(two_stage, "features")(x, targets=classes).maps
    assert torch.allclose(minmax, (up - lo) / (hi - lo), atol=1e-6)


def test_default_target_is_prediction_of_same_pass(two_stage):
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out = gradcam.GradCAM(two_stage)(x)
    assert torch.equal(out.targets, two_stage(x).argmax(1))
    assert torch.allclose(out.logits, two_stage(x), atol=1e-6)
    assert out.maps.dtype == torch.float32 and out.maps.shape == (4, 16, 16)
    assert out.maps.amin() >= 0 and out.maps.amax() <= 1


def test_max_normalisation_divides_by_max_only(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    cam = gradcam.GradCAM(two_stage, "features")
    raw = cam(x, normalize="none").maps
    assert torch.allclose(cam(x, normalize="max").maps, raw / raw.amax(dim=(1, 2), keepdim=True), atol=1e-6)


def test_batch_equals_per_sample(two_stage):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    cam = gradcam.GradCAM(two_stage)
    batched = cam(x, targets=[1, 2, 0]).maps
    single = torch.cat([cam(x[i : i + 1], targets=t).maps for i, t in enumerate([1, 2, 0])])
    assert torch.allclose(batched, single, atol=1e-6)


def test_top_k_explains_the_k_best_classes(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    cam = gradcam.GradCAM(two_stage)
    out = cam(x, top_k=3)
    assert out.maps.shape == (2, 3, 16, 16) and out.targets.shape == (2, 3)
    assert torch.equal(out.targets, two_stage(x).topk(3).indices)
    for r in range(3):
        assert torch.allclose(out.maps[:, r], cam(x, targets=out.targets[:, r]).maps, atol=1e-6)


def test_several_layers_are_fused(two_stage):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    cam_a = gradcam.GradCAM(two_stage, "stem")(x, targets=1)
    cam_b = gradcam.GradCAM(two_stage, "features")(x, targets=1)
    both = gradcam.GradCAM(two_stage, ["stem", two_stage.features])(x, targets=1)
    assert both.layers == ["stem", "features"] and len(both.raw) == 2
    expected = gradcam.engine.functional.normalize((cam_a.maps + cam_b.maps) / 2)
    assert torch.allclose(both.maps, expected, atol=1e-6)


def test_raws_is_one_tuple_for_any_number_of_layers(two_stage):
    """``raws`` has one shape for every caller; ``raw`` keeps the single-layer tensor."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    one = gradcam.GradCAM(two_stage, "features")(x, targets=1)
    two = gradcam.GradCAM(two_stage, ["stem", "features"])(x, targets=1)
    assert isinstance(one.raw, torch.Tensor) and len(one.raws) == 1 and one.raws[0] is one.raw
    assert isinstance(two.raws, tuple) and two.raws == two.raw and len(two.raws) == 2
    assert torch.allclose(two.raws[1], one.raw, rtol=1e-5, atol=1e-6 * float(one.raw.abs().max()))


def test_custom_callable_target_on_dict_output():
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = TwoStageCNN()

        def forward(self, x):
            return {"logits": self.body(x), "extra": 1}

    torch.manual_seed(0)
    model = spread_init(DictModel())
    x = torch.randn(2, 3, 16, 16)
    cam = gradcam.GradCAM(model, "body.features")
    out = cam(x, targets=lambda o: o["logits"][:, 1], normalize="none")
    assert out.targets.tolist() == [-1, -1] and out.logits.shape == (2, 4)
    by_index = cam(x, targets=1, normalize="none")
    assert_relative_close(out.raw, by_index.raw, 1e-6)
    assert_relative_close(out.raw, paper_gradcam(model.body, model.body.features, x, torch.tensor([1, 1])), 1e-5)


def test_tuple_and_object_outputs(two_stage):
    class Wrap(nn.Module):
        def __init__(self, inner, kind):
            super().__init__()
            self.inner, self.kind = inner, kind

        def forward(self, x):
            y = self.inner(x)
            return (y, y * 0) if self.kind == "tuple" else type("Out", (), {"logits": y})()

    x = torch.randn(1, 3, 16, 16)
    ref = gradcam.GradCAM(two_stage, "features")(x, targets=2).raw
    for kind in ("tuple", "object"):
        out = gradcam.GradCAM(Wrap(two_stage, kind), "inner.features")(x, targets=2)
        assert torch.allclose(out.raw, ref)


# --- hygiene ---------------------------------------------------------------------------------------


def test_modes_requires_grad_and_grads_unchanged(two_stage):
    two_stage.train()
    two_stage.stem[1].eval()  # a mixed state must come back exactly
    two_stage.fc.weight.requires_grad_(False)
    two_stage.features[0].weight.grad = torch.ones_like(two_stage.features[0].weight)
    before_modes = {n: m.training for n, m in two_stage.named_modules()}
    before_req = {n: p.requires_grad for n, p in two_stage.named_parameters()}
    before_stats = two_stage.stem[1].running_mean.clone()
    x = torch.randn(2, 3, 16, 16)
    eval_out = gradcam.GradCAM(two_stage)(x)
    assert {n: m.training for n, m in two_stage.named_modules()} == before_modes
    assert {n: p.requires_grad for n, p in two_stage.named_parameters()} == before_req
    assert torch.equal(two_stage.features[0].weight.grad, torch.ones_like(two_stage.features[0].weight))
    assert all(p.grad is None for n, p in two_stage.named_parameters() if n != "features.0.weight")
    assert torch.equal(two_stage.stem[1].running_mean, before_stats)
    two_stage.eval()
    assert torch.allclose(eval_out.logits, two_stage(x), atol=1e-6)  # explained in eval mode (no dropout)
    assert no_hooks(two_stage)


def test_no_hooks_left_after_exception(two_stage):
    class Boom(RuntimeError):
        pass

    def explode(module, inputs, output):
        raise Boom("inside the forward")

    handle = two_stage.head.register_forward_hook(explode)
    two_stage.train()
    with pytest.raises(Boom, match="inside the forward"):
        with gradcam.GradCAM(two_stage, "features") as cam:
            cam(torch.randn(1, 3, 16, 16))
    handle.remove()
    assert no_hooks(two_stage) and two_stage.training and torch.is_grad_enabled()


def test_errors_in_target_resolution_leave_no_hooks(two_stage):
    with pytest.raises(TargetError, match="out of range"):
        gradcam.GradCAM(two_stage)(torch.randn(1, 3, 16, 16), targets=99)
    assert no_hooks(two_stage)


def test_inside_no_grad_and_grad_mode_restored(two_stage):
    x = torch.randn(1, 3, 16, 16)
    expected = gradcam.GradCAM(two_stage)(x).maps
    with torch.no_grad():
        out = gradcam.GradCAM(two_stage)(x)
        assert not torch.is_grad_enabled()
    assert torch.allclose(out.maps, expected)
    with torch.inference_mode():
        assert torch.allclose(gradcam.GradCAM(two_stage)(x.clone()).maps, expected)


def test_no_graph_recorded_before_target_layer(two_stage):
    """The stem runs like inference: its output does not require grad during the call."""
    seen = {}
    handle = two_stage.stem.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o.requires_grad))
    handle2 = two_stage.head.register_forward_hook(lambda m, i, o: seen.__setitem__("head", o.requires_grad))
    try:
        gradcam.GradCAM(two_stage, "features")(torch.randn(1, 3, 16, 16))
    finally:
        handle.remove(), handle2.remove()
    assert seen == {"stem": False, "head": True}


def test_frozen_parameters(two_stage):
    for p in two_stage.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 16, 16)
    out = gradcam.GradCAM(two_stage, "features")(x, targets=1, normalize="none")
    for p in two_stage.parameters():
        p.requires_grad_(True)
    assert torch.allclose(out.raw, paper_gradcam(two_stage, two_stage.features, x, torch.tensor([1])), atol=1e-6)


def test_inplace_relu_after_target_does_not_change_activations():
    """DenseNet-style: the network applies relu_ to the target layer's output afterwards."""

    class InplaceAfter(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            a = self.conv(x)
            return self.fc(F.relu(a, inplace=True).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = InplaceAfter().eval()
    x = torch.randn(2, 3, 8, 8)
    classes = torch.tensor([0, 2])
    a = model.conv(x).detach()
    grad = model.fc.weight[classes][:, :, None, None] * (a > 0) / 64  # d y / d A, relu applied after
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    expected = torch.relu((alpha * a).sum(1))  # a as produced, negatives included
    out = gradcam.GradCAM(model, "conv")(x, targets=classes, normalize="none")
    assert (a < 0).any()
    assert torch.allclose(out.raw, expected.detach(), atol=1e-6)


def test_torchvision_resnet_inplace_relu_and_two_objects_in_turn():
    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    first = gradcam.GradCAM(model, "layer4.1.conv2")(x)
    second = gradcam.GradCAM(model, "layer4")(x)
    again = gradcam.GradCAM(model, "layer4.1.conv2")(x)
    assert torch.allclose(first.maps, again.maps) and not torch.allclose(first.maps, second.maps)
    expected = paper_gradcam(model, model.layer4, x, second.targets)
    assert torch.allclose(second.raw, expected, atol=1e-5)
    assert no_hooks(model)


def test_autocast_returns_float32(two_stage):
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gradcam.GradCAM(two_stage, "features")(x)
    assert out.maps.dtype == torch.float32 and torch.isfinite(out.maps).all()
    ref = gradcam.GradCAM(two_stage, "features")(x, targets=out.targets).maps
    assert (out.maps - ref).abs().max() < 0.1  # bfloat16 rounding only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda(two_stage):
    model = two_stage.cuda()
    out = gradcam.GradCAM(model)(torch.randn(2, 3, 16, 16, device="cuda"))
    assert out.maps.is_cuda and out.maps.dtype == torch.float32


# --- bad input -------------------------------------------------------------------------------------


def test_target_length_mismatch_is_an_error(two_stage):
    with pytest.raises(TargetError, match="got 2 targets for a batch of 3"):
        gradcam.GradCAM(two_stage)(torch.randn(3, 3, 16, 16), targets=[0, 1])


def test_class_name_targets(two_stage):
    labels = ["tabby cat", "tiger cat", "dog", "espresso"]
    cam = gradcam.GradCAM(two_stage, labels=labels)
    x = torch.randn(1, 3, 16, 16)
    assert cam(x, targets="Tiger Cat").targets.tolist() == [1]
    with pytest.raises(TargetError, match="'tiger cat'"):
        cam(x, targets="tiger kat")
    with pytest.raises(TargetError, match="no class names"):
        gradcam.GradCAM(two_stage)(x, targets="dog")


def test_unknown_layer_lists_close_names(two_stage):
    with pytest.raises(LayerError, match="'features'"):
        gradcam.GradCAM(two_stage, "featurs")(torch.randn(1, 3, 16, 16))


def test_layer_must_give_a_feature_map(two_stage):
    with pytest.raises(LayerError, match=r"gives \(1, 4\).*one vector per sample"):
        gradcam.GradCAM(two_stage, "fc")(torch.randn(1, 3, 16, 16))


def test_bad_input_shape_and_normalize(two_stage):
    with pytest.raises(GradCAMError, match=r"\(3, 16, 16\).*Conv2d.*\(B, C, H, W\) images; add the batch axis"):
        gradcam.GradCAM(two_stage)(torch.randn(3, 16, 16))
    with pytest.raises(GradCAMError, match=r"\(B, C, L\) signal, \(B, C, H, W\) image"):
        gradcam.GradCAM(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), "0")(torch.randn(16, 16))
    with pytest.raises(GradCAMError, match="normalize"):
        gradcam.GradCAM(two_stage, normalize="zscore")


def test_target_layers_on_parallel_branches_of_a_frozen_model():
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.a, self.b = (nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                                         nn.Conv2d(4, 4, 3, padding=1))
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            return self.fc(torch.cat([self.a(h), self.b(h)], 1).mean((2, 3)))

    torch.manual_seed(0)
    model = Branches().eval()
    x = torch.randn(2, 3, 8, 8)
    trainable = gradcam.GradCAM(model, ["a", "b"])(x, normalize="none")
    model.requires_grad_(False)
    frozen = gradcam.GradCAM(model, ["a", "b"])(x, normalize="none")
    for t, f in zip(trainable.raw, frozen.raw):
        assert torch.allclose(t, f)
    assert not any(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------------------- errors, consistently


def test_class_names_exact_first_then_unique_case_insensitive():
    """ImageNet has 'Cardigan' (264, the corgi) and 'cardigan' (474, the sweater): both reachable."""
    from gradcam.engine.targets import class_index

    labels = gradcam.models.imagenet_labels()
    assert labels[264] == "Cardigan" and labels[474] == "cardigan"
    assert class_index("cardigan", labels) == 474 and class_index("Cardigan", labels) == 264
    with pytest.raises(TargetError, match="matches 2 classes.*'Cardigan' \\(264\\).*'cardigan' \\(474\\)"):
        class_index("CARDIGAN", labels)
    assert class_index("TIGER CAT", labels) == labels.index("tiger cat")  # unique: case ignored


def test_numpy_integer_targets(two_stage):
    np = pytest.importorskip("numpy")
    x = torch.randn(2, 3, 16, 16)
    cam = gradcam.GradCAM(two_stage, "features")
    expected = cam(x, targets=[2, 1]).targets
    assert cam(x, targets=np.array([2, 1])).targets.tolist() == expected.tolist()
    assert cam(x, targets=[np.int64(2), np.int32(1)]).targets.tolist() == [2, 1]
    assert cam(x, targets=np.int64(3)).targets.tolist() == [3, 3]
    with pytest.raises(TargetError, match="not a class index"):
        cam(x, targets=[np.float32(1.5), 1])


def test_non_finite_or_zero_d_scores_are_errors_not_silent_maps(two_stage):
    x = torch.randn(2, 3, 16, 16)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(gradcam.ModelError, match="NaN or inf.*sample\\(s\\) \\[1\\]"):
        gradcam.GradCAM(two_stage, "features")(x)

    class Scalar(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.conv(x).mean()

    with pytest.raises(TargetError, match="single number"):
        gradcam.GradCAM(Scalar(), "conv")(torch.randn(1, 3, 8, 8))
    with pytest.raises(TargetError, match="NaN or inf scores"):
        gradcam.GradCAM(two_stage, "features")(torch.randn(1, 3, 16, 16), targets=lambda o: o[:, 0] * float("inf"))


def test_integer_inputs_and_bad_labels_are_clear_errors(two_stage):
    with pytest.raises(gradcam.OptionError, match="floating-point tensor, got torch.uint8"):
        gradcam.GradCAM(two_stage, "features")(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(gradcam.OptionError, match="labels must be a sequence of class names"):
        gradcam.GradCAM(two_stage, "features", labels=[0, 1, 2, 3])
    with pytest.raises(gradcam.OptionError, match="3 class names for a model with 4 scores"):
        gradcam.GradCAM(two_stage, "features", labels=["a", "b", "c"])(torch.randn(1, 3, 16, 16))


def test_eigencam_with_nan_activations_is_a_clear_error(two_stage):
    """NaN activations at the layer while the scores stay finite (the head ignores them here): a
    ModelError naming the layer, not a crash inside torch.linalg."""
    two_stage.features[0].register_forward_hook(lambda m, i, o: torch.full_like(o, float("nan")))
    two_stage.head.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with pytest.raises(gradcam.ModelError, match="layer 'features'.*NaN"):
        gradcam.create_method("eigencam", two_stage, "features")(torch.randn(1, 3, 16, 16))


def test_library_errors_are_the_familys():
    from gradcam.apps.synthetic.shapes import make_shapes
    from gradcam.models.bundle import Preprocess

    assert issubclass(gradcam.DataError, GradCAMError)
    with pytest.raises(gradcam.OptionError):
        Preprocess(interpolation="cubic-ish")
    with pytest.raises(gradcam.OptionError, match="max_pixels"):
        gradcam.load_image(b"x", max_pixels=0)
    with pytest.raises(gradcam.OptionError, match="make_shapes"):
        make_shapes("unused", n=1)

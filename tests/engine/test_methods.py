"""Every CAM method against a direct computation of its paper's formula on tiny hand-built models,
plus the registry, smoothing options, batching and hygiene."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TwoStageCNN, spread_init
from mapcheck import assert_relative_close
from torch import nn

import gradcam
from gradcam.engine.methods import ScoreCAM, get_method
from gradcam.errors import LayerError, OptionError, TargetError

ALL = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "ablationcam",
       "eigencam", "cam", "guided-backprop", "guided-gradcam",
       "eigengradcam", "kpcacam", "fem", "shapleycam", "finercam", "sscam", "iscam", "rise", "reciprocam",
       "fullgrad", "legrad"]
TRANSFORMER_ONLY = {"legrad"}  # reads a vision transformer's attention blocks: refuses these CNNs (own tests)
X_TINY = torch.tensor([[[[1.0, -2.0, 0.0], [3.0, 0.5, -1.0], [0.0, 2.0, -4.0]]]])


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               and not m._backward_pre_hooks for m in model.modules())


def activations_and_grads(model, layer, x, classes):
    """A and ∂y^c/∂A by a plain full backward (no gradcam code)."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x.clone().requires_grad_(True))
        a = store["a"]
        a.retain_grad()
        logits[torch.arange(len(classes)), classes].sum().backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return a.detach().double().numpy(), a.grad.double().numpy()


def relu(v):
    return np.maximum(v, 0)


# ------------------------------------------------------------------------------- the formulas by hand


def gradcampp_by_loops(a, g):
    """α_ij^k = g² / (2g² + Σ_ab A_ab^k g³), w_k = Σ_ij α ReLU(g), L = ReLU(Σ_k w_k A^k), with loops."""
    b, k, h, w = a.shape
    out = np.zeros((b, h, w))
    for n in range(b):
        for c in range(k):
            total = a[n, c].sum()
            weight = 0.0
            for i in range(h):
                for j in range(w):
                    gij = g[n, c, i, j]
                    den = 2 * gij**2 + total * gij**3
                    alpha = gij**2 / den if den != 0 else 0.0
                    weight += alpha * max(gij, 0.0)
            out[n] += weight * a[n, c]
    return relu(out)


def xgradcam_by_loops(a, g):
    b, k = a.shape[:2]
    out = np.zeros((b,) + a.shape[2:])
    for n in range(b):
        for c in range(k):
            total = a[n, c].sum()
            weight = (a[n, c] * g[n, c]).sum() / total if total != 0 else 0.0
            out[n] += weight * a[n, c]
    return relu(out)


FORMULAS = {
    "gradcam": lambda a, g: relu((g.mean(axis=(2, 3), keepdims=True) * a).sum(1)),
    "gradcam++": gradcampp_by_loops,
    "xgradcam": xgradcam_by_loops,
    "hirescam": lambda a, g: relu((g * a).sum(1)),
    "layercam": lambda a, g: relu((relu(g) * a).sum(1)),
}


def test_tiny_model_closed_forms(tiny):
    """TinyCNN: A^1 = relu(x), A^2 = relu(-x), y^c = Σ_k w_ck mean(A^k) + b_c, so ∂y/∂A^k = w_ck / 9."""
    x = X_TINY
    a = torch.stack([x[0, 0].clamp_min(0), (-x[0, 0]).clamp_min(0)]).double()
    w = tiny.fc.weight.detach().double()
    for c in range(3):
        g = w[c] / 9
        by_hand = {
            "gradcam": torch.relu(g[0] * a[0] + g[1] * a[1]),
            "hirescam": torch.relu(g[0] * a[0] + g[1] * a[1]),
            "layercam": torch.relu(g[0].clamp_min(0) * a[0] + g[1].clamp_min(0) * a[1]),
            # constant gradient g_k: α = 1 / (2 + S_k g_k), w_k = 9 α ReLU(g_k)
            "gradcam++": torch.relu(sum(9 / (2 + a[k].sum() * g[k]) * g[k].clamp_min(0) * a[k] for k in range(2))),
            "xgradcam": torch.relu(g[0] * a[0] + g[1] * a[1]),  # Σ (A/ΣA) g = g when g is constant
            "cam": w[c, 0] * a[0] + w[c, 1] * a[1],  # no ReLU in CAM
        }
        for name, expected in by_hand.items():
            out = gradcam.create_method(name, tiny, "relu")(x, targets=c, normalize="none")
            assert torch.allclose(out.raw[0].double(), expected, atol=1e-6), (name, c)


@pytest.mark.parametrize("name", list(FORMULAS))
def test_gradient_methods_equal_direct_computation(two_stage, name):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 2, 3])
    a, g = activations_and_grads(two_stage, two_stage.features, x, classes)
    expected = FORMULAS[name](a, g)
    out = gradcam.create_method(name, two_stage, "features")(x, targets=classes, normalize="none")
    assert expected.max() > 0
    np.testing.assert_allclose(out.raw.double().numpy(), expected, atol=1e-6, rtol=1e-5)


def test_gradcampp_differs_from_gradcam(two_stage):
    """The methods really differ where the gradient is not constant (the test above can fail)."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    maps = {n: gradcam.create_method(n, two_stage, "features")(x).maps for n in FORMULAS}
    assert (maps["gradcam++"] - maps["gradcam"]).abs().max() > 1e-2
    assert (maps["hirescam"] - maps["gradcam"]).abs().max() > 1e-2


# ------------------------------------------------------------------------------- Score-CAM


def scorecam_by_loop(model, layer, x, c, channels=None):
    """Algorithm 1 of Wang et al., one channel at a time: softmax over channels of f^c(X ∘ s(Up(A^k)))."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = store["a"][0]
    picked = range(a.shape[0]) if channels is None else channels
    scores, maps = [], []
    for k in picked:
        up = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
        with torch.no_grad():
            scores.append(model(x * mask)[0, c])
        maps.append(a[k])
    weights = torch.softmax(torch.stack(scores), dim=0)
    return torch.relu(sum(w * m for w, m in zip(weights, maps)))


def test_scorecam_equals_algorithm_one(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    out = gradcam.create_method("scorecam", two_stage, "features", batch_size=4)(x, targets=[1, 3], normalize="none")
    for i, c in enumerate([1, 3]):
        expected = scorecam_by_loop(two_stage, two_stage.features, x[i : i + 1], c)
        assert torch.allclose(out.raw[i], expected, atol=1e-6)


def test_scorecam_chunks_max_channels_and_no_item(two_stage, monkeypatch):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    whole = gradcam.create_method("scorecam", two_stage, "features", batch_size=1000)(x, normalize="none")
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("Score-CAM called .item()"))
    chunked = gradcam.create_method("scorecam", two_stage, "features", batch_size=4)(x, normalize="none")
    monkeypatch.undo()
    assert torch.allclose(whole.raw, chunked.raw, atol=1e-6)
    fast = gradcam.create_method("scorecam", two_stage, "features", max_channels=3)(x, normalize="none")
    store = {}
    handle = two_stage.features.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        two_stage(x)
    handle.remove()
    for i in range(2):
        top = store["a"][i].mean(dim=(1, 2)).topk(3).indices.tolist()
        expected = scorecam_by_loop(two_stage, two_stage.features, x[i : i + 1], int(fast.targets[i]), top)
        assert torch.allclose(fast.raw[i], expected, atol=1e-6)
    assert not torch.allclose(fast.raw, whole.raw)


def test_scorecam_scores_a_bounded_number_of_inputs_at_a_time(two_stage):
    sizes = []
    handle = two_stage.stem.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    x = torch.randn(2, 3, 16, 16)
    gradcam.create_method("scorecam", two_stage, "features", batch_size=4)(x)
    handle.remove()
    assert sizes[0] == 2 and max(sizes[1:]) == 4 and sum(sizes[1:]) == 2 * 6  # 6 channels per sample


def test_scorecam_scores_each_distinct_mask_once(two_stage):
    """Channels 0-2 dead (constant 0) and channel 4 a copy of channel 3, equal by construction (copied
    in the layer's output: equal weights are not enough, a conv kernel may round channels differently):
    3 distinct masks of 6, same map."""
    with torch.no_grad():
        conv = two_stage.features[0]
        conv.weight[:3] = 0
        conv.bias[:3] = -1

    def copy_channel(module, inputs, output):
        output = output.clone()
        output[:, 4] = output[:, 3]
        return output

    two_stage.features[0].register_forward_hook(copy_channel)
    sizes = []
    handle = two_stage.stem.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(12))
    out = gradcam.create_method("scorecam", two_stage, "features", batch_size=100)(x, targets=[2], normalize="none")
    handle.remove()
    assert sizes == [1, 3]  # the main pass, then one batch of the 3 distinct masks
    assert torch.allclose(out.raw[0], scorecam_by_loop(two_stage, two_stage.features, x, 2), atol=1e-6)


# ------------------------------------------------------------------------------- Ablation-CAM


def ablationcam_by_loop(model, x, c):
    """w_k = (y − y_k) / y with channel k of TwoStageCNN.features zeroed, L = ReLU(Σ_k w_k A^k)."""
    with torch.no_grad():
        a = model.features(model.stem(x))
        rest = lambda t: model.fc(model.pool(model.head(t)).flatten(1))[0, c]  # noqa: E731
        y = rest(a)
        out = torch.zeros_like(a[0, 0])
        for k in range(a.shape[1]):
            ablated = a.clone()
            ablated[:, k] = 0
            out += (y - rest(ablated)) / y * a[0, k]
    return torch.relu(out)


def test_ablationcam_equals_paper(two_stage, monkeypatch):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("Ablation-CAM called .item()"))
    out = gradcam.create_method("ablationcam", two_stage, "features", batch_size=4)(x, normalize="none")
    monkeypatch.undo()
    for i in range(2):
        expected = ablationcam_by_loop(two_stage.eval(), x[i : i + 1], int(out.targets[i]))
        assert torch.allclose(out.raw[i], expected, atol=1e-5)
    assert out.raw.max() > 0


def test_ablationcam_runs_only_the_layers_after_the_target(two_stage):
    calls = {"stem": 0, "head": 0}
    hooks = [getattr(two_stage, n)[0].register_forward_hook(lambda m, i, o, n=n: calls.__setitem__(n, calls[n] + 1))
             for n in calls]
    gradcam.create_method("ablationcam", two_stage, "features", batch_size=4)(torch.randn(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert calls["stem"] == 1  # the main pass only
    assert calls["head"] == 1 + 1 + 2 * 2  # main pass, the suffix's self-check, 2 samples × ceil(6 / 4)


class Untraceable(TwoStageCNN):
    def forward(self, x):
        if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace this
            return x
        return super().forward(x)


def test_ablationcam_falls_back_to_the_whole_model():
    torch.manual_seed(0)
    model = spread_init(Untraceable(), 0)
    plain = spread_init(TwoStageCNN(), 0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with pytest.warns(UserWarning, match="cannot be traced"):
        slow = gradcam.create_method("ablationcam", model, "features")(x, normalize="none")
    fast = gradcam.create_method("ablationcam", plain, "features")(x, normalize="none")
    assert torch.allclose(slow.raw, fast.raw, atol=1e-6)
    assert no_hooks(model)


# ------------------------------------------------------------------------------- Eigen-CAM, CAM


def test_eigencam_is_first_principal_component(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    a, _ = activations_and_grads(two_stage, two_stage.features, x, torch.tensor([0, 0]))
    out = gradcam.create_method("eigencam", two_stage, "features")(x, normalize="none")
    for i in range(2):
        m = a[i].reshape(a.shape[1], -1).T
        m = m - m.mean(axis=0)
        _, _, vt = np.linalg.svd(m, full_matrices=False)
        p = (m @ vt[0]).reshape(a.shape[2:])
        total = a[i].sum(0)
        if ((p - p.mean()) * (total - total.mean())).sum() < 0:  # sign: along the total activation
            p = -p
        np.testing.assert_allclose(out.raw[i].double().numpy(), relu(p), atol=1e-5)
    again = gradcam.create_method("eigencam", two_stage, "features")(x, targets=[1, 2], normalize="none")
    assert torch.equal(again.raw, out.raw)  # no class


def test_cam_explains_why_a_head_does_not_fit(two_stage):
    x = torch.randn(2, 3, 16, 16)
    out = gradcam.create_method("cam", two_stage, "head")(x, targets=[0, 1], normalize="none")
    a = two_stage.head(two_stage.features(two_stage.stem(x))).detach()
    expected = torch.einsum("bk,bkhw->bhw", two_stage.fc.weight.detach()[[0, 1]], a)
    assert torch.allclose(out.raw, expected, atol=1e-6)
    with pytest.raises(LayerError, match="global average pooling and one linear layer"):
        gradcam.create_method("cam", two_stage, "features")(x)
    with pytest.raises(TargetError, match="class index"):
        gradcam.create_method("cam", two_stage, "head")(x, targets=lambda out: out[:, 0])


# ------------------------------------------------------------------------------- guided methods


def test_guided_backprop_closed_form(tiny):
    """TinyCNN: ∂y^c/∂x guided = 1[x>0] ReLU(w_c0)/9 − 1[x<0] ReLU(w_c1)/9."""
    x = X_TINY
    w = tiny.fc.weight.detach()
    for c in range(3):
        out = gradcam.create_method("guided-backprop", tiny)(x, targets=c, normalize="none")
        expected = (x > 0) * w[c, 0].clamp_min(0) / 9 - (x < 0) * w[c, 1].clamp_min(0) / 9
        assert out.maps.shape == x.shape
        assert torch.allclose(out.maps, expected, atol=1e-7), c
        gg = gradcam.create_method("guided-gradcam", tiny, "relu")(x, targets=c, normalize="none")
        cam = gradcam.GradCAM(tiny, "relu")(x, targets=c, normalize="none").raw
        assert torch.allclose(gg.maps, expected * cam[:, None], atol=1e-7)
    assert no_hooks(tiny)


class InplaceReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True)
        self.conv2, self.act2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6(inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


def test_guided_backprop_batched_inplace_and_model_untouched():
    torch.manual_seed(0)
    model = InplaceReLUNet().train()
    modules_before = list(model.named_modules())
    x = torch.randn(4, 3, 8, 8)
    out = gradcam.create_method("guided-backprop", model)(x, targets=[0, 1, 2, 1], normalize="none")
    for i in range(4):
        alone = gradcam.create_method("guided-backprop", model)(x[i : i + 1], targets=out.targets[i : i + 1].tolist(),
                                                                normalize="none")
        assert torch.allclose(out.maps[i], alone.maps[0], atol=1e-6)
    # direct: the guided rule written as autograd functions on a copy of the network
    x0 = x.clone().requires_grad_(True)
    h1 = torch.relu(model.conv1(x0))
    h1.register_hook(lambda g: g.clamp_min(0))
    h2 = torch.clamp(model.conv2(h1), 0, 6)
    h2.register_hook(lambda g: g.clamp_min(0))
    logits = model.fc(h2.mean(dim=(2, 3)))
    (grad,) = torch.autograd.grad(logits[torch.arange(4), out.targets].sum(), x0)
    assert torch.allclose(out.maps, grad, atol=1e-6)
    assert model.training and list(model.named_modules()) == modules_before and no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------- options and hygiene


@pytest.mark.parametrize("name", [n for n in ALL if n not in TRANSFORMER_ONLY])
def test_every_method_leaves_the_model_as_it_was(name):
    torch.manual_seed(0)
    model = spread_init(TwoStageCNN(), 0).train()
    model.stem[0].weight.requires_grad_(False)
    stats = model.stem[1].running_mean.clone()
    layer = "head" if name == "cam" else "features"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = gradcam.create_method(name, model, None if name == "guided-backprop" else layer)(x)
        still_no_grad = not torch.is_grad_enabled()  # the call left the caller's no_grad as it was
    with torch.inference_mode():
        gradcam.create_method(name, model, None if name == "guided-backprop" else layer)(x)
        still_inference = torch.is_inference_mode_enabled()
    assert still_no_grad and still_inference
    assert model.training and all(m.training for m in model.modules())
    assert not model.stem[0].weight.requires_grad and model.fc.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.stem[1].running_mean, stats)
    assert no_hooks(model)
    expected = (2, 3, 16, 16) if name.startswith("guided") else (2, 16, 16)
    assert out.maps.shape == expected and out.maps.dtype == torch.float32
    assert torch.isfinite(out.maps).all() and out.maps.min() >= 0 and out.maps.max() <= 1


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "guided-backprop"])
def test_augment_averages_the_flipped_map(two_stage, name):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    layer = None if name == "guided-backprop" else "features"
    plain = gradcam.create_method(name, two_stage, layer)
    base = plain(x, normalize="none")
    flipped = plain(x.flip(-1), targets=base.targets, normalize="none")
    both = gradcam.create_method(name, two_stage, layer, augment=True)(x, normalize="none")
    assert torch.allclose(both.raw, (base.raw + flipped.raw.flip(-1)) / 2, atol=1e-6)
    assert torch.equal(both.targets, base.targets)


def test_smooth_is_seeded_and_noise_zero_changes_nothing(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    plain = gradcam.GradCAM(two_stage, "features")(x, normalize="none")
    still = gradcam.GradCAM(two_stage, "features", smooth=3, noise=0.0)(x, normalize="none")
    assert torch.allclose(still.raw, plain.raw, atol=1e-6)
    one = gradcam.create_method("gradcam++", two_stage, "features", smooth=4, noise=0.2)(x, normalize="none")
    two = gradcam.create_method("gradcam++", two_stage, "features", smooth=4, noise=0.2)(x, normalize="none")
    assert torch.equal(one.raw, two.raw)
    assert not torch.allclose(one.raw, plain.raw, atol=1e-4)


def test_top_k_for_score_methods(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(11))
    top = gradcam.create_method("scorecam", two_stage, "features")(x, top_k=2, normalize="none")
    assert top.maps.shape == (2, 2, 16, 16) and top.targets.shape == (2, 2)
    second = gradcam.create_method("scorecam", two_stage, "features")(x, targets=top.targets[:, 1], normalize="none")
    assert torch.allclose(top.raw[:, 1], second.raw, atol=1e-6)


# ------------------------------------------------------------------------------- registry


def test_registry_round_trip(two_stage):
    assert gradcam.list_methods() == ALL
    for name in ALL:
        cls = get_method(name)
        method = gradcam.create_method(name, two_stage, None if name == "guided-backprop" else "features")
        assert type(method) is cls and cls.__doc__.strip()
    assert isinstance(gradcam.create_method("SCORECAM", two_stage, max_channels=2), ScoreCAM)
    with pytest.raises(OptionError, match="gradcam\\+\\+.*guided-gradcam"):
        gradcam.create_method("gradcam+", two_stage)
    with pytest.raises(OptionError, match="max_channels.*not taken by method 'gradcam'"):
        gradcam.create_method("gradcam", two_stage, max_channels=2)  # an option of another method


def test_methods_with_a_bundle_and_class_names():
    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([__import__("PIL.Image", fromlist=["Image"]).new("RGB", (64, 64), (200, 120, 40))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = gradcam.create_method("gradcam++", bundle)(x, targets="tiger cat")
    assert out.targets.tolist() == [bundle.labels.index("tiger cat")]


class CoordNet(nn.Module):
    """A tensor built from the input's shape (not batch-first) is used after the target layer."""

    def __init__(self):
        super().__init__()
        self.conv, self.layer, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        ramp = torch.linspace(0, 1, x.shape[-1])
        return self.fc((self.layer(torch.relu(self.conv(x))) * ramp).mean((2, 3)))


@pytest.mark.filterwarnings("ignore:ablationcam")  # batch 8 = the ramp's length: the self-check falls back
@pytest.mark.parametrize("batch", [1, 2, 8])
def test_ablationcam_traced_suffix_equals_the_whole_model(batch):
    torch.manual_seed(0)
    model = CoordNet().eval()
    x = torch.randn(batch, 3, 8, 8)
    traced = gradcam.create_method("ablationcam", model, "layer")(x, normalize="none")
    whole = gradcam.create_method("ablationcam", model, "layer")
    whole._suffixes["layer"] = None  # the fallback: every ablated copy runs the whole network
    assert torch.allclose(traced.raw, whole(x, normalize="none").raw, atol=1e-5)


def test_two_dimensional_targets_are_checked(two_stage):
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(TargetError, match="integers in \\[0, 4\\)"):
        gradcam.GradCAM(two_stage, "features")(x, targets=torch.tensor([[0, 7]]))
    with pytest.raises(TargetError, match="integers"):
        gradcam.GradCAM(two_stage, "features")(x, targets=torch.tensor([[0.0, 1.0]]))


# finercam: classes
@pytest.mark.parametrize("name", [n for n in ALL if n not in ("cam", "eigencam", "finercam", *TRANSFORMER_ONLY)])
def test_a_per_sample_callable_equals_the_same_classes_given_as_indices(two_stage, name):
    """A callable that picks each sample's own class (as ``f(output) -> (B,)`` invites) gives the maps
    of those classes given as indices, for every method: Score-CAM's masked and Ablation-CAM's ablated
    copies are scored as their own sample, not as the rows of a batch of copies."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(21))
    classes = torch.tensor([2, 0])

    def own_class(output):
        return output[torch.arange(2), classes]

    options = {"batch_size": 2} if name in ("scorecam", "ablationcam") else {}
    if name in ("rise", "reciprocam"):  # their paper's score is the class probability; a callable's is its own
        options = {"probabilities": False, **({"masks": 50} if name == "rise" else {})}
    layer = None if name == "guided-backprop" else "features"
    cam = gradcam.create_method(name, two_stage, layer, **options)
    by_index = cam(x, targets=classes, normalize="none")
    by_callable = cam(x, targets=own_class, normalize="none")
    assert float(by_index.maps.abs().amax()) > 0
    assert_relative_close(by_callable.maps, by_index.maps, 1e-5)


def test_ablationcam_takes_several_layers_like_the_others(two_stage):
    """Each layer ablated in turn gives that layer's own map; the maps are fused like every method's."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(22))
    both = gradcam.create_method("ablationcam", two_stage, ["stem", "features"], batch_size=3)(x, normalize="none")
    assert both.layers == ["stem", "features"] and len(both.raw) == 2
    for raw, layer in zip(both.raw, ["stem", "features"]):
        alone = gradcam.create_method("ablationcam", two_stage, layer)(x, targets=both.targets, normalize="none")
        assert_relative_close(raw, alone.raw, 1e-5)
    assert torch.allclose(both.maps, gradcam.engine.functional.fuse(list(both.raw), x.shape[-2:], "none"), atol=1e-6)


def test_registered_names_keep_their_case_and_re_registering_replaces(two_stage):
    from gradcam.engine.methods.registry import _METHODS

    try:
        @gradcam.engine.methods.register_method("MyCAM")
        class MyCAM(gradcam.GradCAM):
            """My CAM."""

        assert "MyCAM" in gradcam.list_methods()
        assert get_method("MyCAM") is MyCAM and get_method("mycam") is MyCAM
        with pytest.warns(UserWarning, match="registered again"):
            @gradcam.engine.methods.register_method("MyCAM")
            class MyCAM2(gradcam.GradCAM):
                """My CAM, reloaded."""
        assert get_method("MyCAM") is MyCAM2 and gradcam.list_methods().count("MyCAM") == 1
        for bad in ("my.cam", "my_cam", "top2", ""):
            with pytest.raises(OptionError, match="method name"):
                gradcam.engine.methods.register_method(bad)
    finally:
        _METHODS.pop("mycam", None)


def test_methods_declare_what_they_need():
    info = {name: gradcam.engine.methods.method_info(name) for name in gradcam.list_methods()}
    assert info["cam"]["single_layer"] and info["cam"]["needs_linear_head"] and not info["cam"]["uses_gradients"]
    assert info["eigencam"]["class_free"] and not info["gradcam"]["class_free"]
    assert info["guided-backprop"]["output_kind"] == "image" and not info["guided-backprop"]["needs_layer"]
    assert info["guided-gradcam"]["output_kind"] == "image" and info["gradcam"]["output_kind"] == "heatmap"
    assert not info["ablationcam"]["single_layer"]


def test_applicable_methods_say_why_the_others_do_not_apply(two_stage):
    x = torch.randn(1, 3, 16, 16)
    usable, skipped = gradcam.engine.methods.applicable_methods(gradcam.list_methods(), two_stage, "features", x)
    assert [name for name, _ in skipped] == ["cam", "legrad"]  # "features" feeds a conv head, not GAP + linear
    assert "global average pooling" in skipped[0][1] and "features" in skipped[0][1]
    assert "attention blocks" in skipped[1][1]  # a CNN: no transformer blocks
    assert usable == [n for n in gradcam.list_methods() if n not in ("cam", "legrad")]
    usable, skipped = gradcam.engine.methods.applicable_methods(["cam", "gradcam"], two_stage, "head", x)
    assert usable == ["cam", "gradcam"] and not skipped
    _, skipped = gradcam.engine.methods.applicable_methods(["cam", "gradcam"], two_stage, ["head", "features"], x)
    assert skipped == [("cam", "cam explains one layer at a time, got 2")]


def test_a_bad_layer_spec_fails_when_the_method_is_made(two_stage):
    for spec, fragment in ((3, "must be a name"), ("nope", "no layer 'nope'"), ([], "empty list"),
                           (["features", 2.5], "must be a name")):
        with pytest.raises(LayerError, match=fragment):
            gradcam.create_method("gradcam", two_stage, spec)


def test_guided_backprop_warns_when_there_is_no_relu_module_to_guide():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match="no nn.ReLU or nn.ReLU6.*SiLU.*plain input gradient"):
        gradcam.create_method("guided-backprop", model)(torch.randn(1, 3, 8, 8))
    relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradcam.create_method("guided-backprop", relu)(torch.randn(1, 3, 8, 8))

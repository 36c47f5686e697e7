"""Signals (B, C, L), volumes and clips (B, C, D, H, W), and multi-input models: every method against
its formula computed directly, on tiny seeded models."""

from __future__ import annotations

import mapcheck
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradcam

ALL = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "ablationcam",
       "eigencam", "cam", "guided-backprop", "guided-gradcam"]


class Net(nn.Module):
    """Two convolutions, global average pooling, a linear head: in 1, 2 or 3 spatial dimensions."""

    def __init__(self, dims: int, channels: int = 2, classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
        self.stem = nn.Sequential(conv(channels, 6, 3, padding=1), nn.ReLU())
        self.features = nn.Sequential(conv(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool, self.fc = pool(1), nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


INPUTS = {1: (3, 2, 40), 3: (2, 2, 6, 10, 12)}


def _input(dims: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*INPUTS[dims], generator=torch.Generator().manual_seed(seed))


def assert_relative_close(ours: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    """mapcheck's comparison (relative to each map's maximum) for maps with any number of axes."""
    batch = ours.shape[0] if ours.dim() > 1 else 1
    mapcheck.assert_relative_close(ours.reshape(batch, 1, -1), ref.reshape(batch, 1, -1), tol)


def activations_and_grads(model, layer, x, classes, *args):
    """A and ∂y^c/∂A by a plain full backward (no gradcam code), as float64 numpy arrays."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x, *args)
        store["a"].retain_grad()
        logits[torch.arange(len(classes)), classes].sum().backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return store["a"].detach().double().numpy(), store["a"].grad.double().numpy()


def _formula(name, a, g):
    """Each paper's formula over all spatial axes, written with numpy."""
    axes = tuple(range(2, a.ndim))
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    if name == "gradcam":
        return relu((g.mean(axis=axes, keepdims=True) * a).sum(1))
    if name == "hirescam":
        return relu((g * a).sum(1))
    if name == "layercam":
        return relu((relu(g) * a).sum(1))
    if name == "xgradcam":
        total = a.sum(axis=axes, keepdims=True)
        weights = np.where(total != 0, (a * g).sum(axis=axes, keepdims=True) / np.where(total != 0, total, 1), 0)
        return relu((weights * a).sum(1))
    if name == "gradcam++":
        den = 2 * g**2 + a.sum(axis=axes, keepdims=True) * g**3
        alpha = np.where(den != 0, g**2 / np.where(den != 0, den, 1), 0)
        return relu(((alpha * relu(g)).sum(axis=axes, keepdims=True) * a).sum(1))
    raise KeyError(name)


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_gradient_methods_equal_their_formula_on_signals_and_volumes(dims, name):
    model = Net(dims).eval()
    x = _input(dims)
    classes = torch.tensor([0, 2, 1][: len(x)])
    a, g = activations_and_grads(model, model.features, x, classes)
    out = gradcam.create_method(name, model)(x, targets=classes, normalize="none")
    assert out.layers == ["features"] and out.raw.shape == (len(x), *a.shape[2:])
    assert_relative_close(out.raw, torch.from_numpy(_formula(name, a, g)), 1e-5)


@pytest.mark.parametrize("dims", [1, 3])
def test_maps_are_upsampled_linearly_or_trilinearly_to_the_input(dims):
    model = Net(dims).eval()
    x = _input(dims)
    out = gradcam.GradCAM(model)(x)
    mode = {1: "linear", 3: "trilinear"}[dims]
    expected = F.interpolate(out.raw[:, None], size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    lo = expected.flatten(1).amin(1).view(-1, *[1] * dims)
    hi = expected.flatten(1).amax(1).view(-1, *[1] * dims)
    assert out.maps.shape == (len(x), *x.shape[2:])
    assert torch.allclose(out.maps, (expected - lo) / (hi - lo), atol=1e-5)


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("name", ALL)
def test_every_method_explains_signals_and_volumes(dims, name):
    model = Net(dims).eval()
    x = _input(dims)
    out = gradcam.create_method(name, model)(x)
    image = name.startswith("guided")
    assert out.maps.shape == ((len(x), 2, *x.shape[2:]) if image else (len(x), *x.shape[2:]))
    assert torch.isfinite(out.maps).all() and float(out.maps.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("dims", [1, 3])
def test_score_and_ablation_cam_equal_their_papers_in_any_dimension(dims):
    model = Net(dims).eval()
    x = _input(dims, seed=6)[:1]
    store = {}
    handle = model.features.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        y = model(x)[0]
    handle.remove()
    a, c = store["a"][0], int(y.argmax())
    mode = {1: "linear", 3: "trilinear"}[dims]
    scores, drops = [], []
    for k in range(a.shape[0]):
        up = F.interpolate(a[k][None, None], size=x.shape[2:], mode=mode, align_corners=False)[0, 0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
        ablated = a.clone()
        ablated[k] = 0
        with torch.no_grad():
            scores.append(model(x * mask)[0, c])
            drops.append((y[c] - model.fc(model.pool(ablated[None]).flatten(1))[0, c]) / y[c])
    score_map = torch.relu(sum(w * m for w, m in zip(torch.softmax(torch.stack(scores), 0), a)))
    ablation_map = torch.relu(sum(w * m for w, m in zip(drops, a)))
    for name, expected in (("scorecam", score_map), ("ablationcam", ablation_map)):
        out = gradcam.create_method(name, model, batch_size=3)(x, targets=c, normalize="none")
        assert_relative_close(out.raw[0], expected, 1e-5)


def test_a_video_network_r3d_18_equals_the_formula():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(2))
    out = gradcam.GradCAM(model)(x, normalize="none")
    assert out.layers == ["layer4"] and out.maps.shape == (1, 8, 64, 64)
    a, g = activations_and_grads(model, model.layer4, x, out.targets)
    assert out.raw.shape == a.shape[:1] + a.shape[2:]
    assert_relative_close(out.raw, torch.from_numpy(_formula("gradcam", a, g)), 1e-5)


@pytest.mark.parametrize("name", ["mc3_18", "r2plus1d_18"])
def test_other_video_networks_get_a_map_of_the_clip(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models.video, name)(weights=None, num_classes=5).eval()
    out = gradcam.GradCAM(model)(torch.randn(1, 3, 8, 48, 48, generator=torch.Generator().manual_seed(3)))
    assert out.layers == ["layer4"] and out.maps.shape == (1, 8, 48, 48) and float(out.raw.max()) > 0


class TwoInputs(nn.Module):
    """An image and a per-sample vector (metadata) that gates the image features, plus a keyword."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.gate = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, image, meta, *, scale: float = 1.0):
        a = self.features(image)
        gated = a * torch.sigmoid(self.gate(meta))[:, :, None, None] * scale
        return self.fc(gated.mean(dim=(2, 3)))


def test_multi_input_models_equal_the_direct_computation():
    model = TwoInputs().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    meta = torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    out = gradcam.GradCAM(model, "features")(x, forward_args=(meta,), forward_kwargs={"scale": 2.0}, normalize="none")
    store = {}
    handle = model.features.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = model(x, meta, scale=2.0)
    handle.remove()
    assert torch.equal(out.targets, logits.argmax(1))
    (grad,) = torch.autograd.grad(logits[torch.arange(2), out.targets].sum(), store["a"])
    expected = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1))
    assert out.maps.shape == (2, 8, 8)
    assert_relative_close(out.raw, expected.detach(), 1e-5)


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "guided-gradcam", "gradcam"])
def test_multi_input_methods_take_each_samples_own_other_inputs(name):
    """The masked or ablated copies of sample i run with sample i's metadata: a batch gives each sample
    the map it gets alone, and another sample's metadata gives another map."""
    model = TwoInputs().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    meta = torch.randn(2, 4, generator=torch.Generator().manual_seed(7)) * 3
    method = gradcam.create_method(name, model, "features")
    both = method(x, targets=[0, 0], forward_args=(meta,), normalize="none")
    for i in range(2):
        alone = method(x[i:i + 1], targets=[0], forward_args=(meta[i:i + 1],), normalize="none")
        assert_relative_close(both.raw[i], alone.raw[0], 1e-5)
    swapped = method(x[:1], targets=[0], forward_args=(meta[1:],), normalize="none")
    assert not torch.allclose(swapped.raw[0], both.raw[0], atol=1e-3 * float(both.raw[0].abs().max()))


def test_inputs_that_do_not_fit_the_model_are_clear_errors():
    with pytest.raises(gradcam.OptionError, match=r"\(2, 40\).*Conv1d.*\(B, C, L\) signals; add the batch axis"):
        gradcam.GradCAM(Net(1))(torch.randn(2, 40))
    with pytest.raises(gradcam.OptionError, match=r"Conv3d.*\(B, C, D, H, W\) volumes"):
        gradcam.GradCAM(Net(3))(torch.randn(1, 2, 10, 12))
    with pytest.raises(gradcam.OptionError, match="forward_args must be a tuple"):
        gradcam.GradCAM(TwoInputs(), "features")(torch.randn(1, 3, 8, 8), forward_args=torch.randn(1, 4))
    with pytest.raises(gradcam.LayerError, match=r"reshape gave \(1, 8, 20\) for layer 'features' and a batch of 2"):
        gradcam.GradCAM(Net(1), "features", reshape=lambda t: t[:1])(_input(1)[:2])

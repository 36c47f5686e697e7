"""SS-CAM, IS-CAM, Recipro-CAM and RISE: against torchcam (SS-CAM, IS-CAM, on a seeded ResNet-18) and
against their formulas written as direct loops on tiny hand-built models; hooks, gradients and memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TwoStageCNN, seeded_model, spread_init
from mapcheck import assert_relative_close
from test_methods import no_hooks
from torch import nn

import gradcam
from gradcam.engine.suffix import LayerSuffix
from gradcam.engine.targets.tasks import ClassRegion
from gradcam.errors import OptionError

FAMILY = ["sscam", "iscam", "reciprocam", "rise"]


@pytest.fixture(scope="module")
def resnet18():
    return seeded_model("resnet18")


def _capture(model, layer, x):
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return store["a"], logits


def _minmax_channels(maps):
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-30), torch.zeros_like(maps))


# ----------------------------------------------------------------------------- SS-CAM, IS-CAM vs torchcam


def _torchcam(cls, model, layer, x, c, **options):
    """torchcam's map (un-normalised) with the masks scaled as the paper and we do: upsampled, then min-max
    scaled (torchcam scales the low-resolution map, then upsamples)."""
    with cls(model, layer, batch_size=32, input_shape=tuple(x.shape[1:]), **options) as extractor:
        extractor._normalize = lambda cams, spatial_dims=None, eps=1e-8: cams
        extractor._upsample = lambda act: _minmax_channels(F.interpolate(act, x.shape[2:], mode="bilinear",
                                                                         align_corners=False))
        with torch.no_grad():
            logits = model(x)
        return extractor(c, logits, normalized=False)[0]


class _Bank:
    """Stands for torchcam's noise distribution: draw i is noise[i] for every channel (our common draws)."""

    def __init__(self, noise):
        self.noise, self.calls = noise, 0

    def sample(self, size):
        self.calls += 1
        return self.noise[self.calls - 1].expand(size).clone()


def test_sscam_equals_torchcam_given_the_same_noise(resnet18, monkeypatch):
    torchcam = pytest.importorskip("torchcam.methods")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = gradcam.create_method("sscam", resnet18, "layer1", num_samples=3, std=0.3, seed=5)(x, normalize="none")
    noise = torch.randn((3, 32, 32), generator=torch.Generator().manual_seed(5)) * 0.3  # our draws, by their seed
    real_init = torchcam.SSCAM.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._distrib = bank

    bank = _Bank(noise[:, None, None])  # torchcam samples (B, K, H, W) noise per draw
    monkeypatch.setattr(torchcam.SSCAM, "__init__", init)
    ref = _torchcam(torchcam.SSCAM, resnet18, "layer1", x, int(ours.targets[0]), num_samples=3, std=0.3)
    assert bank.calls == 3
    assert_relative_close(ours.raw, ref, 1e-4)
    plain = gradcam.create_method("scorecam", resnet18, "layer1")(x, targets=ours.targets, normalize="none")
    assert (ours.raw - plain.raw).abs().max() > 1e-3 * plain.raw.abs().max()  # the noise did something


def test_iscam_equals_torchcam(resnet18):
    torchcam = pytest.importorskip("torchcam.methods")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ours = gradcam.create_method("iscam", resnet18, "layer1", num_samples=4)(x, normalize="none")
    ref = _torchcam(torchcam.ISCAM, resnet18, "layer1", x, int(ours.targets[0]), num_samples=4)
    assert_relative_close(ours.raw, ref, 1e-4)
    other = gradcam.create_method("iscam", resnet18, "layer1", num_samples=2)(x, targets=ours.targets,
                                                                             normalize="none")
    assert (other.raw - ref).abs().max() > 1e-3 * ref.abs().max()  # the comparison can fail


def test_sscam_without_noise_is_scorecam_and_is_seeded(two_stage):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    plain = gradcam.create_method("scorecam", two_stage, "features")(x, normalize="none")
    still = gradcam.create_method("sscam", two_stage, "features", num_samples=3, std=0.0)(x, normalize="none")
    assert_relative_close(still.raw, plain.raw, 1e-5)
    one = gradcam.create_method("sscam", two_stage, "features", num_samples=4, batch_size=3)(x, normalize="none")
    two = gradcam.create_method("sscam", two_stage, "features", num_samples=4, batch_size=50)(x, normalize="none")
    assert_relative_close(one.raw, two.raw, 1e-5)  # the draws do not depend on the chunks
    alone = gradcam.create_method("sscam", two_stage, "features", num_samples=4)(x[1:], targets=one.targets[1:],
                                                                                normalize="none")
    assert_relative_close(alone.raw, one.raw[1:], 1e-5)  # nor on the batch a sample came in
    seeded = gradcam.create_method("sscam", two_stage, "features", num_samples=4, seed=1)(x, normalize="none")
    assert not torch.allclose(seeded.raw, one.raw)


@pytest.mark.parametrize("name, options", [("sscam", {"num_samples": 5}), ("iscam", {"num_samples": 5}),
                                           ("reciprocam", {}), ("rise", {"masks": 23})])
def test_a_bounded_number_of_inputs_per_pass_and_the_model_left_alone(two_stage, name, options, monkeypatch):
    """Every perturbed copy batched at most ``batch_size`` at a time; hooks removed; no .grad written."""
    sizes = []
    handle = two_stage.head.register_forward_hook(  # not while Ablation-CAM's tracer runs (a Proxy)
        lambda m, i, o: sizes.append(i[0].shape[0]) if isinstance(i[0], torch.Tensor) else None)
    two_stage.fc.weight.grad = torch.full_like(two_stage.fc.weight, 7.0)
    resume = LayerSuffix.resume  # Recipro-CAM runs its copies through the traced network after the layer

    def counted(self, rows, activations):
        sizes.append(len(rows))
        return resume(self, rows, activations)

    monkeypatch.setattr(LayerSuffix, "resume", counted)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    gradcam.create_method(name, two_stage, "features", batch_size=4, **options)(x)
    handle.remove()
    assert sizes[0] == 2 and max(sizes[1:]) == 4 and len(sizes) > 3
    expected = {"sscam": 2 * 6 * 5, "iscam": 2 * 6 * 5, "reciprocam": 2 * 8 * 8, "rise": 2 * 23}[name]
    assert sum(sizes[1:]) <= expected + (2 if name == "reciprocam" else 0)  # + Recipro-CAM's suffix check
    assert no_hooks(two_stage)
    assert torch.equal(two_stage.fc.weight.grad, torch.full_like(two_stage.fc.weight, 7.0))
    assert all(p.grad is None for n, p in two_stage.named_parameters() if n != "fc.weight")


def test_no_item_per_score(two_stage, monkeypatch):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    methods = [gradcam.create_method(n, two_stage, "features", batch_size=5, **o) for n, o in
               (("sscam", {"num_samples": 3}), ("iscam", {"num_samples": 3}), ("rise", {"masks": 20}))]
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("called .item()"))
    for method in methods:
        method(x, targets=[1])


# ----------------------------------------------------------------------------- RISE by a direct loop


def test_rise_equals_its_formula_by_a_direct_loop(two_stage):
    x = torch.randn(2, 3, 16, 14, generator=torch.Generator().manual_seed(7))
    n, cell, p = 30, 4, 0.4
    out = gradcam.create_method("rise", two_stage, masks=n, cell=cell, p=p, seed=3, batch_size=7)(
        x, targets=[1, 2], normalize="none")
    gen = torch.Generator().manual_seed(3)  # the paper's recipe, drawn in the documented order
    grids = (torch.rand((n, cell, cell), generator=gen) < p).float()
    steps = [-(-16 // cell), -(-14 // cell)]
    shifts = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in steps], dim=1)
    for b, c in enumerate([1, 2]):
        saliency = torch.zeros(16, 14)
        for i in range(n):
            up = F.interpolate(grids[i][None, None], size=((cell + 1) * steps[0], (cell + 1) * steps[1]),
                               mode="bilinear", align_corners=False)[0, 0]
            dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
            mask = up[dy:dy + 16, dx:dx + 14]
            with torch.no_grad():
                score = two_stage(x[b:b + 1] * mask).softmax(dim=1)[0, c]
            saliency += score * mask
        assert_relative_close(out.raw[b], saliency / (n * p), 1e-5)


def test_rise_takes_signals_volumes_and_raw_scores():
    torch.manual_seed(0)
    signal = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))
    out = gradcam.create_method("rise", signal, masks=16, cell=5)(torch.randn(2, 2, 30), normalize="none")
    assert out.maps.shape == (2, 30) and float(out.raw.amax()) > 0
    volume = nn.Sequential(nn.Conv3d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
    out = gradcam.create_method("rise", volume, masks=16, cell=3)(torch.randn(1, 1, 6, 8, 8))
    assert out.maps.shape == (1, 6, 8, 8) and torch.isfinite(out.maps).all()
    x = torch.randn(1, 2, 30)
    probs = gradcam.create_method("rise", signal, masks=16)(x, targets=[1], normalize="none").raw
    raw = gradcam.create_method("rise", signal, masks=16, probabilities=False)(x, targets=[1], normalize="none").raw
    assert not torch.allclose(probs, raw)
    with pytest.raises(OptionError, match="p in"):
        gradcam.create_method("rise", signal, p=0)


# ----------------------------------------------------------------------------- Recipro-CAM by a direct loop


def _reciprocam_by_loop(model, layer, x, c, kernel):
    a, _ = _capture(model, layer, x)
    h, w = a.shape[-2:]
    line = torch.tensor([0.25, 0.5, 0.25])
    scores = torch.zeros(h, w)
    for i in range(h):
        for j in range(w):
            phi = torch.zeros(h, w)
            if kernel == "point":
                phi[i, j] = 1
            else:
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < h and 0 <= j + dj < w:
                            phi[i + di, j + dj] = line[di + 1] * line[dj + 1]
            handle = layer.register_forward_hook(lambda m, inp, o, phi=phi: o * phi)
            with torch.no_grad():
                scores[i, j] = model(x).softmax(dim=1)[0, c]
            handle.remove()
    return scores


@pytest.mark.parametrize("kernel", ["gaussian", "point"])
def test_reciprocam_equals_its_formula_by_a_direct_loop(two_stage, kernel):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    out = gradcam.create_method("reciprocam", two_stage, "features", kernel=kernel, batch_size=5)(
        x, targets=[3, 0], normalize="none")
    for b, c in enumerate([3, 0]):
        assert_relative_close(out.raw[b], _reciprocam_by_loop(two_stage, two_stage.features, x[b:b + 1], c, kernel),
                              1e-5)


class TinyViT(nn.Module):
    """A class token and 4×4 patch tokens; ``blocks`` mixes the tokens; the head reads the class token."""

    num_prefix_tokens = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.patch_embed = nn.Conv2d(3, 8, 4, stride=4)
        self.patch_embed.patch_size = 4
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.blocks = nn.Linear(8, 8)
        self.mix = nn.Linear(17, 17)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = self.blocks(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        mixed = self.mix(tokens.transpose(1, 2)).transpose(1, 2).relu()
        return self.head(mixed[:, 0])


class ChannelsLastNet(nn.Module):
    channels_last_activations = True

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.stage = nn.Identity()
        self.fc = nn.Linear(5 * 8 * 8, 3)

    def forward(self, x):
        a = self.stage(self.conv(x).permute(0, 2, 3, 1))  # (B, 8, 8, 5)
        return self.fc(a.flatten(1).tanh())


@pytest.mark.filterwarnings("ignore:reciprocam")  # untraceable (len(x)): the whole model runs
def test_reciprocam_on_tokens_keeps_the_class_token_and_masks_the_patch_grid():
    model = TinyViT().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    out = gradcam.create_method("reciprocam", model, "blocks", kernel="point")(x, targets=[2], normalize="none")
    a, _ = _capture(model, model.blocks, x)
    expected = torch.zeros(4, 4)
    for u in range(16):
        keep = torch.zeros(17, 1)
        keep[0], keep[1 + u] = 1, 1
        handle = model.blocks.register_forward_hook(lambda m, i, o, keep=keep: o * keep)
        with torch.no_grad():
            expected.view(-1)[u] = model(x).softmax(dim=1)[0, 2]
        handle.remove()
    assert_relative_close(out.raw[0], expected, 1e-5)


def test_reciprocam_on_a_channels_last_layer():
    model = ChannelsLastNet().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    out = gradcam.create_method("reciprocam", model, "stage", kernel="point")(x, targets=[1], normalize="none")
    expected = torch.zeros(8, 8)
    for u in range(64):
        keep = torch.zeros(64)
        keep[u] = 1
        handle = model.stage.register_forward_hook(lambda m, i, o, keep=keep: o * keep.view(1, 8, 8, 1))
        with torch.no_grad():
            expected.view(-1)[u] = model(x).softmax(dim=1)[0, 1]
        handle.remove()
    assert_relative_close(out.raw[0], expected, 1e-5)


# ----------------------------------------------------------------------------- every layout, 1-D, 3-D, regions


class Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.out(self.features(x))


@pytest.mark.parametrize("name", FAMILY)
def test_signals_volumes_and_a_class_region_target(name):
    options = {"sscam": {"num_samples": 2}, "iscam": {"num_samples": 2}, "rise": {"masks": 12}}.get(name, {})
    torch.manual_seed(0)
    signal = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                           nn.Linear(4, 3))
    out = gradcam.create_method(name, signal, "0", **options)(torch.randn(2, 2, 12))
    assert out.maps.shape == (2, 12) and torch.isfinite(out.maps).all()
    volume = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                           nn.Linear(4, 3))
    out = gradcam.create_method(name, volume, "0", **options)(torch.randn(1, 1, 4, 6, 6))
    assert out.maps.shape == (1, 4, 6, 6) and torch.isfinite(out.maps).all()
    seg = Segmenter().eval()
    out = gradcam.create_method(name, seg, "features", **options)(torch.randn(1, 3, 8, 8), targets=ClassRegion(1),
                                                                  normalize="none")
    assert out.maps.shape == (1, 8, 8) and torch.isfinite(out.maps).all() and float(out.raw.abs().amax()) > 0
    assert no_hooks(signal) and no_hooks(volume) and no_hooks(seg)


def test_rise_needs_no_layer_and_the_others_do():
    model = spread_init(TwoStageCNN(), 0)
    info = {n: gradcam.engine.methods.method_info(n) for n in FAMILY}
    assert not info["rise"]["needs_layer"] and all(info[n]["needs_layer"] for n in FAMILY if n != "rise")
    assert not any(info[n]["uses_gradients"] for n in FAMILY)
    usable, skipped = gradcam.engine.methods.applicable_methods(FAMILY, model, "features", torch.randn(1, 3, 16, 16))
    assert usable == FAMILY and not skipped
    with pytest.raises(OptionError, match="kernel"):
        gradcam.create_method("reciprocam", model, "features", kernel="box")

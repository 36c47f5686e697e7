"""FullGrad, LeGrad and Deep Feature Factorization against their references and against their formulas
computed by hand on tiny models.

Where a reference departs from the paper we follow the paper, and compare on the ground they share:
- pytorch-grad-cam's FullGrad and ours agree on torchvision convolution networks (Conv2d and BatchNorm2d
  with affine parameters, the only biased layers it reads); we also read BatchNorm without affine
  parameters and Conv/BatchNorm subclasses.
- torchcam's LeGrad supports torchvision ViTs only and reads each block's tokens as their mean (the authors'
  code); ours reads them with the model's own pooling by default: compared with ``pooling="mean"``.
- pytorch-grad-cam's DFF subtracts each channel's minimum, also a positive one, and factorises with
  scikit-learn's NMF (another solver, another start): compared on ReLU activations that hold a zero in
  every channel (both offsets 0), by reconstruction error and by concept maps matched on correlation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from conftest import seeded_model, spread_init
from mapcheck import assert_minmax_close, assert_relative_close
from PIL import Image
from test_methods import no_hooks
from torch import nn

import gradcam
from gradcam.apps.synthetic.small_nets import small_vit
from gradcam.engine.methods import applicable_methods
from gradcam.engine.methods.dff import DeepFeatureFactorization, nmf
from gradcam.engine.methods.fullgrad import FullGrad
from gradcam.engine.methods.legrad import LeGrad
from gradcam.errors import ModelError
from gradcam.render.concepts import concept_legend, concepts_picture

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))


# ----------------------------------------------------------------------------------------- FullGrad


@pytest.fixture(scope="module")
def resnet18():
    return seeded_model("resnet18")


def test_fullgrad_equals_pytorch_grad_cam_on_resnet18(resnet18):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ours = FullGrad(resnet18)(x, normalize="none")
    assert ours.raw.shape == (2, 64, 64) and ours.layers == []
    targets = [ClassifierOutputTarget(int(c)) for c in ours.targets]
    ref = torch.from_numpy(pgc.FullGrad(resnet18, [])(input_tensor=x, targets=targets))
    assert_minmax_close(ours.raw, ref, 1e-4)


class ConvBNLinear(nn.Module):
    """conv (bias) → BN → ReLU → conv (no bias) → BN (no affine) → ReLU → GAP → linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4, affine=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return self.fc(y.mean(dim=(2, 3)))


def conv_bn_linear() -> ConvBNLinear:
    torch.manual_seed(0)
    model = ConvBNLinear()
    bn2, model.bn2 = model.bn2, nn.Identity()
    spread_init(model, 0)
    model.bn2 = bn2
    bn2.running_mean.normal_(0, 0.3)
    bn2.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _psi(t):  # |·|, min-max per (sample, channel)
    t = t.abs()
    lo, hi = t.amin(dim=(2, 3), keepdim=True), t.amax(dim=(2, 3), keepdim=True)
    return (t - lo) / (hi - lo + 1e-7)


def test_fullgrad_is_the_papers_sum_by_hand():
    model = conv_bn_linear()
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = FullGrad(model)(x, targets=torch.tensor([2, 0]), normalize="none").raw
    # by hand: the outputs of conv1, bn1 and bn2 kept, their gradients and the input's by one backward
    xi = x.clone().requires_grad_(True)
    c1 = model.conv1(xi)
    b1 = model.bn1(c1)
    b2 = model.bn2(model.conv2(torch.relu(b1)))
    logits = model.fc(torch.relu(b2).mean(dim=(2, 3)))
    for t in (c1, b1, b2):
        t.retain_grad()
    logits[[0, 1], [2, 0]].sum().backward()
    model.zero_grad(set_to_none=True)
    bias1 = model.bn1.bias - model.bn1.weight * model.bn1.running_mean / torch.sqrt(model.bn1.running_var + 1e-5)
    bias2 = -model.bn2.running_mean / torch.sqrt(model.bn2.running_var + 1e-5)
    up = torch.nn.functional.interpolate
    expected = _psi(xi.grad * x).sum(1) + _psi(c1.grad * model.conv1.bias.view(1, -1, 1, 1)).sum(1) \
        + _psi(b1.grad * bias1.view(1, -1, 1, 1)).sum(1) \
        + up(_psi(b2.grad * bias2.view(1, -1, 1, 1)), size=(8, 8), mode="bilinear", align_corners=False).sum(1)
    assert_relative_close(ours, expected.detach(), 1e-5)


# ------------------------------------------------------------------------------------------- LeGrad


@pytest.fixture(scope="module")
def torchvision_vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=64, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=64, mlp_dim=128, num_classes=5)
    return spread_init(model, 0)  # torchvision starts the head at zero: every gradient would be 0


def test_legrad_equals_torchcam_on_a_torchvision_vit(torchvision_vit):
    from torchcam.methods import LeGrad as TorchcamLeGrad

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ours = LeGrad(torchvision_vit, pooling="mean")(x, normalize="none")
    assert ours.raw.shape == (2, 8, 8) and ours.maps.shape == (2, 64, 64)
    names = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    with TorchcamLeGrad(torchvision_vit, names) as extractor:
        ref = extractor(ours.targets.tolist(), torchvision_vit(x), normalized=False)[0]
    assert_relative_close(ours.raw, ref, 1e-4)
    assert no_hooks(torchvision_vit)
    # the class token (the model's own pooling) is another map
    own = LeGrad(torchvision_vit)(x, targets=ours.targets, normalize="none").raw
    assert float((own - ref).abs().max() / ref.abs().max()) > 0.05


def test_legrad_leaves_the_attention_modules_as_they_were(torchvision_vit):
    """A forward the user set on an attention module is back after the call; one module in two blocks is refused."""
    import copy

    from gradcam.errors import LayerError

    model = copy.deepcopy(torchvision_vit)
    mha = model.encoder.layers[0].self_attention
    own = mha.forward
    mha.forward = lambda *args, **kwargs: own(*args, **kwargs)
    mine = mha.forward
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    before = LeGrad(model)(x, normalize="none").raw
    assert mha.forward is mine and "legrad_forward" not in vars(mha)
    torch.testing.assert_close(LeGrad(model)(x, normalize="none").raw, before)
    model.encoder.layers[1].self_attention = mha  # tied: both blocks run one module
    with pytest.raises(LayerError, match="two blocks"):
        LeGrad(model)(x)
    assert mha.forward is mine and "legrad_forward" not in vars(mha)


def test_legrad_by_hand_on_a_timm_vit():
    model = small_vit(64, classes=3)
    fused = [block.attn.fused_attn for block in model.blocks]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    classes = torch.tensor([1, 2])
    ours = LeGrad(model)(x, targets=classes, normalize="none").raw
    assert [block.attn.fused_attn for block in model.blocks] == fused  # restored
    # by hand: every block's attention and tokens kept; ∂s^l/∂A^l one block at a time (no detaching)
    store = {"a": [], "z": []}
    handles = []
    for block in model.blocks:
        block.attn.fused_attn = False
        handles.append(block.attn.attn_drop.register_forward_hook(lambda m, i, o: store["a"].append(o)))
        handles.append(block.register_forward_hook(lambda m, i, o: store["z"].append(o)))
    try:
        model(x)
    finally:
        for h, block, f in zip(handles, list(model.blocks) * 2, fused * 2):
            h.remove()
            block.attn.fused_attn = f
    per_block = []
    for a, z in zip(store["a"], store["z"]):
        s = model.forward_head(model.norm(z))[[0, 1], classes].sum()
        (g,) = torch.autograd.grad(s, a, retain_graph=True)
        per_block.append(g.clamp_min(0).mean(dim=(1, 2))[:, 1:].reshape(2, 8, 8))
    expected = torch.stack(per_block).mean(0)
    assert_relative_close(ours, expected, 1e-5)


def test_legrad_says_why_it_does_not_apply_to_a_cnn(resnet18):
    x = torch.randn(1, 3, 32, 32)
    usable, skipped = applicable_methods(["legrad", "fullgrad", "gradcam"], resnet18, None, x)
    assert usable == ["fullgrad", "gradcam"]
    assert skipped[0][0] == "legrad" and "attention blocks" in skipped[0][1] and "ResNet" in skipped[0][1]
    with pytest.raises(ModelError, match="attention blocks"):
        LeGrad(resnet18)(x)
    assert no_hooks(resnet18)


# ---------------------------------------------------------------------------------------- hygiene


@pytest.mark.parametrize("name", ["fullgrad", "legrad"])
def test_the_model_is_left_as_it_was(name):
    model = small_vit(32, classes=3) if name == "legrad" else conv_bn_linear()
    model.train()
    stats = [b.clone() for b in model.buffers()]
    x = torch.randn(2, 3 if name == "legrad" else 2, 32, 32)
    with torch.no_grad():
        out = gradcam.create_method(name, model)(x)
        assert not torch.is_grad_enabled()
    assert out.maps.shape == (2, 32, 32) and torch.isfinite(out.maps).all()
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))
    assert no_hooks(model)


def test_hooks_go_also_after_an_exception():
    model = small_vit(32, classes=3)
    fused = [block.attn.fused_attn for block in model.blocks]
    with pytest.raises(Exception):
        LeGrad(model)(torch.randn(1, 3, 32, 32), targets=torch.tensor([7]))  # no class 7
    assert no_hooks(model) and [block.attn.fused_attn for block in model.blocks] == fused


# ------------------------------------------------------------------------------------------------ DFF


def test_nmf_finds_a_separable_factorisation_as_scikit_learn_does():
    from scipy.optimize import linear_sum_assignment
    from sklearn.decomposition import NMF

    gen = torch.Generator().manual_seed(7)
    w = torch.rand(40, 3, generator=gen, dtype=torch.float64)
    h = torch.zeros(3, 60, dtype=torch.float64)
    for k in range(3):  # each position belongs to one concept: the factorisation is unique up to scale and order
        h[k, 20 * k:20 * (k + 1)] = torch.rand(20, generator=gen, dtype=torch.float64) + 0.5
    v = w @ h
    ours_w, ours_h = nmf(v, 3, iterations=2000, tol=1e-9)
    ref = NMF(n_components=3, init="random", random_state=0, max_iter=2000)
    ref_w = torch.from_numpy(ref.fit_transform(v.numpy()))
    ref_h = torch.from_numpy(ref.components_)
    ours_error = float((v - ours_w @ ours_h).norm() / v.norm())
    ref_error = float((v - ref_w @ ref_h).norm() / v.norm())
    assert ours_error < 0.02 and ref_error < 0.02
    similarity = np.array([[_corr(a, b) for b in ref_h] for a in ours_h])
    rows, cols = linear_sum_assignment(-similarity)
    assert similarity[rows, cols].min() > 0.98


class BiasFreeCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, bias=False), nn.ReLU(),
                                      nn.Conv2d(12, 16, 3, padding=1, bias=False), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_dff_against_pytorch_grad_cam_and_the_head_by_hand():
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff as reference_dff
    from scipy.optimize import linear_sum_assignment

    torch.manual_seed(0)
    model = spread_init(BiasFreeCNN(), 0)
    gen = torch.Generator().manual_seed(8)
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, :8, :8] = torch.rand(2, 3, 8, 8, generator=gen) * 2  # two textured quarters; the right half
    x[:, :, 8:, :8] = -torch.rand(2, 3, 8, 8, generator=gen) * 2  # zero: every channel holds a 0 there
    out = DeepFeatureFactorization(model, "features.3", concepts=3, iterations=2000)(x)
    assert out.maps.shape == (2, 3, 16, 16) and out.raw.shape == (2, 3, 16, 16) and out.embeddings.shape == (3, 16)
    with torch.no_grad():
        acts = model.features(x)
        assert bool((acts.amin(dim=(0, 2, 3)) == 0).all())
        assert torch.allclose(out.scores, model.fc(out.embeddings), atol=1e-5)  # the head by hand
    concepts, explanations = reference_dff(acts.numpy().copy(), n_components=3)
    ref_h = torch.from_numpy(explanations).double()  # (B, k, h, w)
    a = acts.movedim(1, 0).reshape(16, -1).double()
    ref_error = float((a - torch.from_numpy(concepts).double() @ ref_h.movedim(1, 0).reshape(3, -1)).norm() / a.norm())
    assert abs(out.error - ref_error) < 0.02
    similarity = np.array([[_corr(out.raw[:, i], ref_h[:, j]) for j in range(3)] for i in range(3)])
    rows, cols = linear_sum_assignment(-similarity)
    assert similarity[rows, cols].mean() > 0.9, similarity[rows, cols]
    assert no_hooks(model) and all(p.grad is None for p in model.parameters())
    legend = concept_legend(out.top_classes(2), labels=[f"c{i}" for i in range(5)])
    assert len(legend) == 3 and legend[0].startswith("concept 0: c")
    picture = concepts_picture(Image.new("RGB", (16, 16)), out.maps[0].numpy(), legend, title="dff")
    assert picture.width > 100 and picture.height > 100


def test_dff_scores_concepts_with_resnets_own_head(resnet18):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    out = DeepFeatureFactorization(resnet18, "layer4", concepts=4)(x)
    assert out.scores.shape == (4, 1000) and len(out.top_classes(3)[0]) == 3
    assert torch.allclose(out.scores, resnet18.fc(out.embeddings), atol=1e-4)
    assert float(out.maps.amin()) >= 0 and float(out.maps.amax()) <= 1

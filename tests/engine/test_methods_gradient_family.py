"""Eigen-Grad-CAM, KPCA-CAM, FEM, ShapleyCAM and Finer-CAM: against pytorch-grad-cam and torchcam on a seeded
ResNet-18 and a small ViT, against their formulas computed by hand on tiny models, on every layout.

Where a reference departs from the paper we follow the paper and compare on the ground both share:
- Eigen-Grad-CAM and KPCA-CAM: an SVD's or eigenvector's sign is arbitrary (pytorch-grad-cam keeps
  LAPACK's, resp. scikit-learn's largest-entry-positive); we orient the component along Σ_k of what is
  decomposed. Compared on the reference's own projection, oriented by our rule.
- FEM: pytorch-grad-cam weights the activations by the fraction of positions above the k-sigma threshold,
  the paper the binary maps by the channel means; both agree where each channel takes one value on a few
  positions and 0 elsewhere: compared there.
- Finer-CAM: pytorch-grad-cam weights each comparison by its softmax probability (and differentiates
  through it); with one comparison class that weight cancels. torchcam's is the paper's formula.
- ShapleyCAM: compared with the paper's ReST target (y^c + log softmax(y)^c) on ResNet-18, where a logit
  target would make the Hessian term 0 after layer4's ReLU, pooling and linear head.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TwoStageCNN, seeded_model, spread_init
from mapcheck import assert_minmax_close, assert_relative_close
from test_methods import activations_and_grads, no_hooks, relu
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import gradcam
from gradcam.engine.targets.tasks import ClassRegion
from gradcam.errors import OptionError, TargetError

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform  # noqa: E402

NEW = ["eigengradcam", "kpcacam", "fem", "shapleycam", "finercam"]


@pytest.fixture(scope="module")
def resnet18():
    return seeded_model("resnet18")


@pytest.fixture(scope="module")
def x64():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def vit():
    """A two-block ViT on 64-px inputs: a 4×4 grid of patch tokens after the class token."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2, embed_dim=48,
                              num_heads=3, num_classes=10)
    return spread_init(model, 0)


def _vit_reshape(tensor):
    return vit_reshape_transform(tensor, height=4, width=4)


def _untouched(model):
    return no_hooks(model) and all(p.grad is None for p in model.parameters())


def _orient(projection: torch.Tensor, along: torch.Tensor) -> torch.Tensor:
    """(B, *s) projections flipped where they anti-correlate with ``along`` (our orientation rule)."""
    p, t = projection.flatten(1).double(), along.flatten(1).double()
    sign = torch.sign(((p - p.mean(1, keepdim=True)) * (t - t.mean(1, keepdim=True))).sum(1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return projection.double() * sign.view(-1, *[1] * (projection.dim() - 1))


def _recorder(monkeypatch, module, name):
    """Wrap pytorch-grad-cam's ``module.name`` projection: record what it decomposes and what it returns."""
    calls = []
    original = getattr(module, name)

    def recorded(batch, *args, **kwargs):
        result = original(batch, *args, **kwargs)
        calls.append((torch.from_numpy(np.array(batch)), torch.from_numpy(np.array(result))))
        return result

    monkeypatch.setattr(module, name, recorded)
    return calls


# ----------------------------------------------------------------------------- against the references


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_eigengradcam_equals_pytorch_grad_cam(resnet18, x64, layer, monkeypatch):
    import pytorch_grad_cam.eigen_grad_cam as module

    out = gradcam.create_method("eigengradcam", resnet18, layer)(x64, normalize="none")
    calls = _recorder(monkeypatch, module, "get_2d_projection")
    with pgc.EigenGradCAM(resnet18, [resnet18.get_submodule(layer)]) as cam:
        cam(input_tensor=x64, targets=[ClassifierOutputTarget(int(c)) for c in out.targets])
    resnet18.zero_grad(set_to_none=True)
    (decomposed, projection), = calls
    assert_relative_close(out.raw, torch.relu(_orient(projection, decomposed.sum(1))), 1e-4)
    # what the reference decomposes is A ⊙ ∂y^c/∂A
    a, g = activations_and_grads(resnet18, resnet18.get_submodule(layer), x64, out.targets)
    assert_relative_close(decomposed, torch.from_numpy(a * g), 1e-4)
    assert _untouched(resnet18)


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_kpcacam_equals_pytorch_grad_cam(resnet18, x64, layer, monkeypatch):
    import pytorch_grad_cam.kpca_cam as module

    out = gradcam.create_method("kpcacam", resnet18, layer)(x64, normalize="none")
    calls = _recorder(monkeypatch, module, "get_2d_projection_kernel")
    with pgc.KPCA_CAM(resnet18, [resnet18.get_submodule(layer)]) as cam:
        cam(input_tensor=x64, targets=[ClassifierOutputTarget(int(c)) for c in out.targets])
    (activations, projection), = calls
    assert_relative_close(out.raw, torch.relu(_orient(projection, activations.sum(1))), 1e-4)
    assert _untouched(resnet18)


def test_fem_equals_pytorch_grad_cam_where_they_agree():
    """Each channel one value a_k on under 20 % of the positions, 0 elsewhere: μ_k B^k = mean(B^k) A^k."""
    gen = torch.Generator().manual_seed(3)
    values = torch.rand(2, 6, 1, 1, generator=gen) + 0.5
    x = values * (torch.rand(2, 6, 16, 16, generator=gen) < 0.1)
    model = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    out = gradcam.create_method("fem", model, "0")(x, normalize="none")
    with pgc.FEM(model, [model[0]]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * 2))
    assert float(out.raw.amin()) == 0 and float(out.raw.amax()) > 0
    assert_minmax_close(out.maps, ref, 1e-4)
    assert _untouched(model)


def test_fem_departs_from_pytorch_grad_cam_on_graded_activations(resnet18, x64):
    """On real activations the paper's binary maps are not the reference's weighted activations."""
    out = gradcam.create_method("fem", resnet18, "layer3")(x64, normalize="none")
    with pgc.FEM(resnet18, [resnet18.layer3]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x64, targets=[ClassifierOutputTarget(0)] * 2))
    ours = gradcam.engine.functional.normalize(out.maps, "minmax")
    assert float((ours - ref).abs().max()) > 0.05


def _rest(classes):
    """The paper's ReST target y^c + log softmax(y)^c = y^c − cross-entropy, as a gradcam callable."""
    return lambda o: o.gather(1, classes[:, None])[:, 0] + o.log_softmax(1).gather(1, classes[:, None])[:, 0]


def test_shapleycam_equals_pytorch_grad_cam_with_its_rest_target(resnet18, x64):
    classes = gradcam.GradCAM(resnet18)(x64).targets
    out = gradcam.create_method("shapleycam", resnet18)(x64, targets=_rest(classes), normalize="none")
    with pgc.ShapleyCAM(resnet18, [resnet18.layer4]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x64, targets=[ClassifierOutputReST(int(c)) for c in classes]))
    resnet18.zero_grad(set_to_none=True)
    assert_minmax_close(out.maps, ref, 2e-3)
    # the Hessian term is not zero here: ShapleyCAM is not Grad-CAM of the same target ...
    grad = gradcam.GradCAM(resnet18)(x64, targets=_rest(classes), normalize="none")
    assert float(((out.raw - grad.raw).abs().amax((1, 2)) / grad.raw.abs().amax((1, 2))).min()) > 0.01
    # ... while after layer4's ReLU, pooling and linear head a logit's Hessian is 0: Grad-CAM exactly
    logit = gradcam.create_method("shapleycam", resnet18)(x64, targets=classes, normalize="none")
    assert_relative_close(logit.raw, gradcam.GradCAM(resnet18)(x64, targets=classes, normalize="none").raw, 1e-5)
    assert _untouched(resnet18)


def test_finercam_equals_pytorch_grad_cam_with_one_comparison(resnet18, x64):
    out = gradcam.create_method("finercam", resnet18, comparisons=1, strength=1.0)(x64, normalize="none")
    with pgc.FinerCAM(resnet18, [resnet18.layer4]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x64, targets=None, comparison_categories=[1], alpha=1.0))
    resnet18.zero_grad(set_to_none=True)
    assert_minmax_close(out.maps, ref, 2e-3)
    assert _untouched(resnet18)


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_finercam_equals_torchcam(resnet18, x64, alpha):
    torchcam = pytest.importorskip("torchcam.methods")
    out = gradcam.create_method("finercam", resnet18, "layer4", comparisons=3, strength=alpha)(x64, normalize="none")
    with torchcam.FinerCAM(resnet18, "layer4", input_shape=(3, 64, 64), gamma=alpha, num_references=3) as extractor:
        ref = extractor(out.targets.tolist(), resnet18(x64), normalized=False)[0]
    resnet18.zero_grad(set_to_none=True)
    assert_relative_close(out.raw, ref, 1e-4)
    assert _untouched(resnet18)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the reference's __del__
@pytest.mark.parametrize("reshape", [None, _vit_reshape], ids=["layout", "reshape"])
@pytest.mark.parametrize("name", ["eigengradcam", "kpcacam", "shapleycam", "finercam"])
def test_a_vit_through_pytorch_grad_cams_reshape_transform(vit, name, reshape, monkeypatch):
    """The last block's norm1 tokens, read by their layout or by the reshape, against the reference with
    its documented reshape_transform."""
    import pytorch_grad_cam.eigen_grad_cam as eigen_module
    import pytorch_grad_cam.kpca_cam as kpca_module

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    layer = "blocks.1.norm1"
    options = {"comparisons": 1} if name == "finercam" else {}
    out = gradcam.create_method(name, vit, layer, reshape=reshape, **options)(x, normalize="none")
    assert out.raw.shape == (2, 4, 4) and float(out.raw.amax()) > 0
    assert _untouched(vit)
    targets = [ClassifierOutputTarget(int(c)) for c in out.targets]
    vit = copy.deepcopy(vit)  # the reference's hooks can outlive it (its release fails on reshaped views)
    module = vit.get_submodule(layer)
    if name in ("eigengradcam", "kpcacam"):
        calls = _recorder(monkeypatch, *((eigen_module, "get_2d_projection") if name == "eigengradcam"
                                         else (kpca_module, "get_2d_projection_kernel")))
        cls = pgc.EigenGradCAM if name == "eigengradcam" else pgc.KPCA_CAM
        with cls(vit, [module], reshape_transform=_vit_reshape) as cam:
            cam(input_tensor=x, targets=targets)
        (decomposed, projection), = calls
        assert_relative_close(out.raw, torch.relu(_orient(projection, decomposed.sum(1))), 1e-4)
    elif name == "shapleycam":
        # pytorch-grad-cam's ShapleyCAM cannot run here (its get_cam_image reads the tokens it did not
        # reshape): the formula on the tokens, by hand. Attention, GELU and LayerNorm follow norm1, so a
        # logit's Hessian is not 0; the fused attention kernels have no second derivative: the math one.
        store = {}
        handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        with sdpa_kernel([SDPBackend.MATH]):
            logits = vit(x)
        handle.remove()
        score = logits.gather(1, out.targets[:, None]).sum()
        (g,) = torch.autograd.grad(score, store["a"], create_graph=True)
        (ha,) = torch.autograd.grad(g, store["a"], grad_outputs=store["a"].detach())
        a, g, ha = (_vit_reshape(t.detach()) for t in (store["a"], g, ha))
        expected = torch.relu(((g - 0.5 * ha).mean(dim=(2, 3), keepdim=True) * a).sum(1))
        assert_relative_close(out.raw, expected, 1e-4)
        grad = gradcam.GradCAM(vit, layer)(x, targets=out.targets, normalize="none")
        assert float((out.raw - grad.raw).abs().max() / grad.raw.abs().max()) > 1e-3
    else:  # not in a `with`: the reference's exit fails on the reshaped gradients' views
        cam = pgc.FinerCAM(vit, [module], reshape_transform=_vit_reshape)
        ref = torch.from_numpy(cam(input_tensor=x, targets=None, comparison_categories=[1]))
        assert_minmax_close(out.maps, ref, 2e-3)


# ----------------------------------------------------------------------------- the formulas by hand


def _svd_projection(m: np.ndarray) -> np.ndarray:
    """(positions, K) -> the centred rows on the first right singular vector, oriented along Σ_k m."""
    centred = m - m.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = centred @ vt[0]
    total = m.sum(axis=1)
    return -p if ((p - p.mean()) * (total - total.mean())).sum() < 0 else p


def test_eigengradcam_by_hand(two_stage):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 2, 3])
    a, g = activations_and_grads(two_stage, two_stage.features, x, classes)
    product = a * g
    expected = np.stack([relu(_svd_projection(p.reshape(p.shape[0], -1).T)).reshape(p.shape[1:]) for p in product])
    out = gradcam.create_method("eigengradcam", two_stage, "features")(x, targets=classes, normalize="none")
    assert expected.max() > 0
    assert_relative_close(out.raw, torch.from_numpy(expected), 1e-5)
    other = gradcam.create_method("eigengradcam", two_stage, "features")(x, targets=classes.flip(0), normalize="none")
    assert not torch.allclose(other.raw, out.raw, atol=1e-3)  # the class matters, unlike Eigen-CAM's


def _kernel_by_loops(points: np.ndarray, kernel: str, gamma: float) -> np.ndarray:
    n = len(points)
    k = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            u, v = points[i], points[j]
            k[i, j] = {"sigmoid": lambda: np.tanh(gamma * u @ v + 1),
                       "rbf": lambda: np.exp(-gamma * ((u - v) ** 2).sum()),
                       "poly": lambda: (gamma * u @ v + 1) ** 3, "linear": lambda: u @ v,
                       "cosine": lambda: u @ v / (np.linalg.norm(u) * np.linalg.norm(v))}[kernel]()
    return k


@pytest.mark.parametrize("kernel", ["sigmoid", "rbf", "poly", "cosine", "linear"])
def test_kpcacam_by_hand_and_against_scikit_learn(two_stage, kernel):
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    gamma = 0.3 if kernel == "rbf" else None
    out = gradcam.create_method("kpcacam", two_stage, "features", kernel=kernel, gamma=gamma)(x, normalize="none")
    a, _ = activations_and_grads(two_stage, two_stage.features, x, torch.tensor([0, 0]))
    for b in range(2):
        points = a[b].reshape(a.shape[1], -1).T
        points = points - points.mean(axis=0)
        n = len(points)
        centring = np.eye(n) - np.full((n, n), 1 / n)
        gram = centring @ _kernel_by_loops(points, kernel, gamma or 1 / a.shape[1]) @ centring
        values, vectors = np.linalg.eigh(gram)
        p = vectors[:, -1] * np.sqrt(values[-1])
        total = a[b].sum(0).ravel()
        p = -p if ((p - p.mean()) * (total - total.mean())).sum() < 0 else p
        assert_relative_close(out.raw[b], torch.from_numpy(relu(p).reshape(a.shape[2:])), 1e-5)
        sk = decomposition.KernelPCA(n_components=1, kernel=kernel, gamma=gamma).fit_transform(points)[:, 0]
        assert_relative_close(out.raw[b], torch.from_numpy(relu(-sk if sk @ p < 0 else sk).reshape(a.shape[2:])), 1e-5)
    classes = gradcam.create_method("kpcacam", two_stage, "features", kernel=kernel, gamma=gamma)(
        x, targets=[3, 1], normalize="none")
    assert torch.equal(classes.raw, out.raw)  # class-free


def test_fem_by_hand(resnet18, x64):
    out = gradcam.create_method("fem", resnet18, "layer3")(x64, normalize="none")
    a, _ = activations_and_grads(resnet18, resnet18.layer3, x64, torch.tensor([0, 0]))
    mean, std = a.mean(axis=(2, 3), keepdims=True), a.std(axis=(2, 3), keepdims=True)
    expected = relu(((a > mean + 2 * std) * mean).sum(1))
    assert expected.max() > 0
    assert_relative_close(out.raw, torch.from_numpy(expected), 1e-5)
    loose = gradcam.create_method("fem", resnet18, "layer3", k=1)(x64, normalize="none")
    assert_relative_close(loose.raw, torch.from_numpy(relu(((a > mean + std) * mean).sum(1))), 1e-5)
    assert _untouched(resnet18)


class SmoothHead(nn.Module):
    """TwoStageCNN's layers with a smooth head after ``features`` (softplus, squares): a curved score."""

    def __init__(self):
        super().__init__()
        base = spread_init(TwoStageCNN(), 0)
        self.stem, self.features = base.stem, base.features
        self.head = nn.Conv2d(6, 5, 1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        h = F.softplus(self.head(self.features(self.stem(x))))
        return self.fc(h.pow(2).mean(dim=(2, 3)))


def test_shapleycam_by_hand_with_a_finite_difference_hessian():
    """H A as the derivative of the gradient along A, (g(A + εA) − g(A − εA)) / 2ε, in float64."""
    torch.manual_seed(0)
    model = SmoothHead().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    classes = torch.tensor([1, 3])
    out = gradcam.create_method("shapleycam", model, "features")(x, targets=classes, normalize="none")
    double = SmoothHead().eval().double()
    double.load_state_dict(model.state_dict())
    with torch.no_grad():
        a = double.features(double.stem(x.double()))

    def gradient(acts):
        acts = acts.clone().requires_grad_(True)
        h = F.softplus(double.head(acts))
        scores = double.fc(h.pow(2).mean(dim=(2, 3)))[torch.arange(2), classes]
        return torch.autograd.grad(scores.sum(), acts)[0]

    eps = 1e-5
    g = gradient(a)
    ha = (gradient(a * (1 + eps)) - gradient(a * (1 - eps))) / (2 * eps)
    weights = (g - 0.5 * ha).mean(dim=(2, 3))
    expected = torch.relu(torch.einsum("bk,bkhw->bhw", weights, a))
    assert float(ha.abs().max()) > 0.1 * float(g.abs().max())  # the Hessian term matters here
    assert_relative_close(out.raw, expected, 1e-5)
    assert _untouched(model)


def test_finercam_by_hand(two_stage):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    classes = torch.tensor([0, 2, 3])
    out = gradcam.create_method("finercam", two_stage, "features", comparisons=2, strength=0.7)(
        x, targets=classes, normalize="none")
    with torch.no_grad():
        logits = two_stage(x).double().numpy()
    store = {}
    handle = two_stage.features.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    y = two_stage(x)
    handle.remove()
    score = 0
    for b, c in enumerate(classes.tolist()):
        distance = np.abs(logits[b] - logits[b, c])
        distance[c] = np.inf
        similar = np.argsort(distance)[:2]
        score = score + y[b, c] - 0.7 * y[b, similar].mean()
    (g,) = torch.autograd.grad(score, store["a"])
    a = store["a"].detach()
    expected = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    assert_relative_close(out.raw, expected, 1e-5)
    plain = gradcam.GradCAM(two_stage, "features")(x, targets=classes, normalize="none")
    assert_relative_close(gradcam.create_method("finercam", two_stage, "features", strength=0.0)(
        x, targets=classes, normalize="none").raw, plain.raw, 1e-6)  # α = 0: Grad-CAM
    assert not torch.allclose(out.raw, plain.raw, atol=1e-3)
    assert _untouched(two_stage)


def test_finercam_options_and_what_it_cannot_compare(two_stage):
    x = torch.randn(1, 3, 16, 16)
    for bad in ({"comparisons": 0}, {"comparisons": 1.5}, {"strength": float("nan")}):
        with pytest.raises(OptionError):
            gradcam.create_method("finercam", two_stage, "features", **bad)
    with pytest.raises(OptionError, match="kernel"):
        gradcam.create_method("kpcacam", two_stage, "features", kernel="laplacian")
    with pytest.raises(OptionError, match="k-sigma"):
        gradcam.create_method("fem", two_stage, "features", k=-1)
    with pytest.raises(TargetError, match="finercam compares a class"):
        gradcam.create_method("finercam", two_stage, "features")(x, targets=lambda o: o[:, 0])
    # more comparisons than classes: every other class
    many = gradcam.create_method("finercam", two_stage, "features", comparisons=10)(x, targets=1, normalize="none")
    every = gradcam.GradCAM(two_stage, "features")(
        x, targets=lambda o: o[:, 1] - torch.cat([o[:, :1], o[:, 2:]], dim=1).mean(1), normalize="none")
    assert_relative_close(many.raw, every.raw, 1e-5)
    binary = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    why = gradcam.create_method("finercam", binary, "1").unsuitable(x)
    assert "finercam compares a class" in why and "(1, 1)" in why


# ----------------------------------------------------------------------------- layouts, dimensions, targets


class NHWC(nn.Module):
    """A convolution whose map is handed on channels-last, (B, h, w, 24), as Swin's stages are."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 24, 4, stride=4)
        self.features = nn.Identity()
        self.norm = nn.LayerNorm(24)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        tokens = self.features(self.conv(x).permute(0, 2, 3, 1))
        return self.fc(torch.tanh(self.norm(tokens)).mean(dim=(1, 2)))


@pytest.mark.parametrize("name", NEW)
def test_a_channels_last_map_gives_the_channels_first_maps(name):
    model = NHWC().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    last = gradcam.create_method(name, model, "features")(x, normalize="none")
    first = gradcam.create_method(name, model, "conv")(x, targets=last.targets, normalize="none")
    assert last.raw.shape == (2, 8, 8)
    if name != "fem":
        assert float(first.raw.amax()) > 0
    assert torch.allclose(last.raw, first.raw, atol=1e-5 * float(first.raw.abs().max()) + 1e-7)
    assert _untouched(model)


class Net(nn.Module):
    """Two convolutions, a softplus and a linear head: in 1, 2 or 3 spatial dimensions."""

    def __init__(self, dims: int):
        super().__init__()
        torch.manual_seed(0)
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        self.stem = nn.Sequential(conv(2, 6, 3, padding=1), nn.ReLU())
        self.features = nn.Sequential(conv(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(F.softplus(self.features(self.stem(x))).flatten(2).mean(2))


@pytest.mark.parametrize("dims, shape", [(1, (3, 2, 40)), (3, (2, 2, 6, 16, 16))], ids=["signal", "volume"])
@pytest.mark.parametrize("name", NEW)
def test_signals_and_volumes(name, dims, shape):
    """Maps at the input's size; each sample's map is the map it gets alone."""
    model = Net(dims).eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    options = {"k": 1} if name == "fem" else {}
    out = gradcam.create_method(name, model, "features", **options)(x, normalize="none")
    assert out.maps.shape == shape[:1] + shape[2:] and out.raw.dim() == dims + 1
    assert torch.isfinite(out.maps).all() and float(out.raw[1:].amax()) > 0
    alone = gradcam.create_method(name, model, "features", **options)(x[1:], targets=out.targets[1:], normalize="none")
    assert torch.allclose(alone.raw, out.raw[1:], atol=1e-5 * float(out.raw[1:].abs().max()))
    assert _untouched(model)


class Segmenter(nn.Module):
    """(B, 4, H, W) class scores at the input's resolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU())
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return F.interpolate(self.classifier(self.features(x)), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


@pytest.mark.parametrize("name", NEW)
def test_a_class_region_target(name):
    model = Segmenter().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    out = gradcam.create_method(name, model, "features")(x, targets=ClassRegion(2), normalize="none")
    assert out.raw.shape == (1, 8, 8) and torch.isfinite(out.raw).all()
    if name == "finercam":  # the region's class against the classes whose region scores are closest
        with torch.no_grad():
            scores = model(x)
        mask = scores.argmax(1) == 2
        others = [0, 1, 3]  # four classes: the three comparisons by default are all the others
        difference = lambda o: ((o[:, 2] - o[:, others].mean(1)) * mask).sum(dim=(-2, -1))  # noqa: E731
        plain = gradcam.GradCAM(model, "features")(x, targets=difference, normalize="none")
        assert_relative_close(out.raw, plain.raw, 1e-5)
    assert _untouched(model)


def test_every_new_method_is_listed_with_what_it_needs():
    info = {name: gradcam.engine.methods.method_info(name) for name in NEW}
    assert info["kpcacam"]["class_free"] and info["fem"]["class_free"]
    assert not info["kpcacam"]["uses_gradients"] and not info["fem"]["uses_gradients"]
    for name in ("eigengradcam", "shapleycam", "finercam"):
        assert info[name]["uses_gradients"] and not info[name]["class_free"]
    assert gradcam.engine.methods.method_options("finercam") >= {"comparisons", "strength"}
    assert gradcam.engine.methods.method_options("kpcacam") >= {"kernel", "gamma"}
    assert "k" in gradcam.engine.methods.method_options("fem")
    names = gradcam.list_methods()
    assert names[names.index("guided-gradcam") + 1:][:5] == NEW

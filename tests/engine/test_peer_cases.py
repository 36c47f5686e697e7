"""The peers' own test cases, ported: what pytorch-grad-cam, torchcam and captum run and the engine once
refused. Odd-sized inputs whose last map is 1×2; a model whose output is one dict per sample with a
callable target; an FPN backbone's dict of levels read through ``reshape=`` (pytorch-grad-cam's Faster
R-CNN recipe); Swin's token layers, whose grid the stage declares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import seeded_model, spread_init
from mapcheck import assert_minmax_close, assert_relative_close
from test_methods import FORMULAS, activations_and_grads, no_hooks, relu, scorecam_by_loop
from torch import nn

import gradcam
from gradcam.engine.layouts import Layout, find_layout
from gradcam.errors import LayerError

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FasterRCNNBoxScoreTarget  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform, swinT_reshape_transform  # noqa: E402

ODD_SIZES = [(32, 40), (40, 32), (17, 64)]  # layer4 gives (1, 2), (2, 1) and (1, 2) maps


@pytest.fixture(scope="module")
def resnet18():
    return seeded_model("resnet18")


def _layer4(model, x):
    """layer4's output A (1, 512, h, w), by a plain hook, and the fc weights W."""
    store = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return store["a"], model.fc.weight.detach(), logits


def _by_hand(name, model, x, c):
    """The method's map of class c at layer4, computed on layer4's output without gradcam's code."""
    if name in FORMULAS:
        a, g = activations_and_grads(model, model.layer4, x, torch.tensor([c]))
        return torch.from_numpy(FORMULAS[name](a, g))
    a, w, logits = _layer4(model, x)
    if name == "cam":
        return torch.einsum("k,bkhw->bhw", w[c], a)
    if name == "ablationcam":  # y_k = y − W_ck·mean(A^k) through layer4's linear head: w_k = (y − y_k) / y
        weights = w[c] * a.mean(dim=(2, 3))[0] / logits[0, c]
        return torch.relu(torch.einsum("k,bkhw->bhw", weights, a))
    if name == "scorecam":
        return scorecam_by_loop(model, model.layer4, x, c)[None]
    if name in ("sscam", "iscam"):
        return _smoothed_scorecam_by_loop(name, model, a, x, c)[None]
    if name == "reciprocam":  # the default 3×3 binomial kernel, centred on each position of layer4's map
        line = torch.tensor([0.25, 0.5, 0.25])
        h, w = a.shape[2:]
        scores = torch.zeros(h, w)
        for i in range(h):
            for j in range(w):
                phi = torch.zeros(h, w)
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < h and 0 <= j + dj < w:
                            phi[i + di, j + dj] = line[di + 1] * line[dj + 1]
                with torch.no_grad():
                    scores[i, j] = model.fc((a * phi).mean(dim=(2, 3))).softmax(dim=1)[0, c]
        return scores[None]
    if name in ("eigengradcam", "kpcacam", "fem", "shapleycam", "finercam"):
        return _gradient_family_by_hand(name, model, x, c)
    if name == "eigencam":
        m = a[0].reshape(a.shape[1], -1).T.double().numpy()
        m = m - m.mean(axis=0)
        _, _, vt = np.linalg.svd(m, full_matrices=False)
        p = m @ vt[0]
        total = a[0].sum(0).flatten().double().numpy()
        p = -p if ((p - p.mean()) * (total - total.mean())).sum() < 0 else p
        return torch.from_numpy(relu(p).reshape(1, *a.shape[2:]))
    raise KeyError(name)


def _gradient_family_by_hand(name, model, x, c):
    """Eigen-Grad-CAM, KPCA-CAM, FEM, ShapleyCAM and Finer-CAM of class c at layer4 (one sample)."""
    a, g = activations_and_grads(model, model.layer4, x, torch.tensor([c]))
    if name == "shapleycam":  # layer4's ReLU output -> pooling -> linear: a logit's Hessian is 0, Grad-CAM
        return torch.from_numpy(FORMULAS["gradcam"](a, g))
    if name == "fem":  # μ_k 1[A^k > μ_k + 2σ_k]; on two positions neither is 2σ above the mean: 0
        mean, std = a.mean(axis=(2, 3), keepdims=True), a.std(axis=(2, 3), keepdims=True)
        return torch.from_numpy(relu(((a > mean + 2 * std) * mean).sum(1)))
    if name == "finercam":  # y^c − mean of the 3 classes of closest scores, then Grad-CAM
        store = {}
        handle = model.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        y = model(x)[0]
        handle.remove()
        distance = (y.detach() - y[c].detach()).abs()
        distance[c] = float("inf")
        (grad,) = torch.autograd.grad(y[c] - y[distance.argsort()[:3]].mean(), store["a"])
        return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["a"].detach()).sum(1))
    m = (a * g if name == "eigengradcam" else a)[0].reshape(a.shape[1], -1).T
    m = m - m.mean(axis=0)
    if name == "eigengradcam":
        p = m @ np.linalg.svd(m, full_matrices=False)[2][0]
    else:  # kernel PCA, sigmoid kernel tanh(x·y / K + 1), centred; the leading eigenvector × √λ
        n = len(m)
        centring = np.eye(n) - 1 / n
        values, vectors = np.linalg.eigh(centring @ np.tanh(m @ m.T / a.shape[1] + 1) @ centring)
        p = vectors[:, -1] * np.sqrt(max(values[-1], 0))
    total = (a * g if name == "eigengradcam" else a)[0].sum(0).ravel()
    p = -p if ((p - p.mean()) * (total - total.mean())).sum() < 0 else p
    return torch.from_numpy(relu(p).reshape(1, *a.shape[2:]))


def _smoothed_scorecam_by_loop(name, model, a, x, c):
    """SS-CAM (the default 35 draws of σ = 2 noise from seed 0, the same for every channel) or IS-CAM (the
    default 10 steps of accumulated coefficients i(i+1)/2N), one channel at a time; a mask met before is
    not scored again (a channel whose min-max scaled map was met: a 1×2 map has 3 distinct ones)."""
    n = 35 if name == "sscam" else 10
    noise = torch.randn((n, *x.shape[2:]), generator=torch.Generator().manual_seed(0)) * 2.0
    seen, scores = {}, []
    for k in range(a.shape[1]):
        up = F.interpolate(a[0, k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
        low = a[0, k] - a[0, k].min()
        key = (low / low.max() if low.max() > 0 else low).numpy().tobytes()  # the channel's map, min-max scaled
        if key not in seen:
            with torch.no_grad():
                copies = ([mask + noise[i] for i in range(n)] if name == "sscam"
                          else [mask * (i * (i + 1) / (2 * n)) for i in range(1, n + 1)])
                seen[key] = model(x * torch.stack(copies)[:, None])[:, c].mean()  # one batch
        scores.append(seen[key])
    weights = torch.softmax(torch.stack(scores), dim=0)
    return torch.relu(torch.einsum("k,khw->hw", weights, a[0]))


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_method_runs_on_odd_sized_inputs_and_equals_the_computation_by_hand(resnet18, size):
    """pytorch-grad-cam's test_all_cam_models_can_run: a map of 1×2 positions is a feature map."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    assert gradcam.auto_layer(resnet18, x) == "layer4"
    for name in gradcam.list_methods():
        if name == "legrad":  # a vision transformer's method: ResNet-18 has no attention blocks to read
            continue
        options = {"masks": 64} if name == "rise" else {}  # RISE's 4000 passes of ResNet-18: too slow here
        method = gradcam.create_method(name, resnet18, **options)
        out = method(x)
        expected_shape = (1, 3, *size) if method.output_kind == "image" else (1, *size)
        assert out.maps.shape == expected_shape and bool(torch.isfinite(out.maps).all()), name
        if method.needs_layer and name != "guided-gradcam":
            raw = gradcam.create_method(name, resnet18, "layer4")(x, targets=out.targets, normalize="none").raw
            assert raw.shape[1:] == _layer4(resnet18, x)[0].shape[2:]
            expected = _by_hand(name, resnet18, x, int(out.targets[0])).to(raw.dtype)
            if name == "fem":  # two positions: none lies 2σ above the mean, the map is 0 by hand too
                assert not expected.any() and not raw.any()
                continue
            assert_relative_close(raw, expected, 1e-4)
    assert no_hooks(resnet18)


# ----------------------------------------------------------------------------- structured outputs


class PerSampleDicts(nn.Module):
    """torchcam's structured-output case: one dict of named scores per sample."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 2)

    def scores(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def forward(self, x):
        return [{"primary": row[0], "secondary": row[1]} for row in self.scores(x)]


def _picker(keys):
    return lambda out: torch.stack([out[i][k] for i, k in enumerate(keys)])


@pytest.mark.parametrize("name, options", [("gradcam", {}), ("scorecam", {}), ("gradcam++", {"smooth": 2})])
def test_a_callable_target_reads_per_sample_structured_outputs(name, options):
    model = PerSampleDicts().eval()
    x = torch.randn(3, 3, 10, 12, generator=torch.Generator().manual_seed(4))
    keys = ["primary", "secondary", "secondary"]
    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    out = gradcam.create_method(name, model, "features", **options)(x, targets=_picker(keys), normalize="none")
    assert out.raw.shape == (3, 10, 12) and float(out.raw.max()) > 0
    assert (out.targets == -1).all() and out.logits.shape == (3, 1)  # the callable's own scores
    for i, key in enumerate(keys):  # each sample alone
        alone = gradcam.create_method(name, model, "features", **options)(x[i:i + 1], targets=_picker([key]),
                                                                          normalize="none")
        assert_relative_close(out.raw[i:i + 1], alone.raw, 1e-5)
    # the same maps as the plain tensor model explained for the same classes
    plain = nn.Module()
    plain.features, plain.fc = model.features, model.fc
    plain.forward = model.scores
    classes = [0 if k == "primary" else 1 for k in keys]
    same = gradcam.create_method(name, plain, "features", **options)(x, targets=classes, normalize="none")
    assert_relative_close(out.raw, same.raw, 1e-5)
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 7.0))
    assert all(p.grad is None for p, g in zip(model.parameters(), grads_before) if p is not model.fc.weight)


def test_structured_outputs_without_a_callable_target_still_say_what_to_pass():
    with pytest.raises(gradcam.TargetError, match="targets=callable"):
        gradcam.GradCAM(PerSampleDicts().eval(), "features")(torch.randn(2, 3, 8, 8))


# ----------------------------------------------------------------------------- a dict-valued layer


@pytest.fixture(scope="module")
def faster_rcnn():
    """A seeded Faster R-CNN on 128-pixel images, and its largest detection as a reference target."""
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=128, max_size=128, box_score_thresh=0.0).eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        found = model(x)[0]
    boxes = found["boxes"]
    best = int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).argmax())
    return model, x, boxes[best].numpy(), int(found["labels"][best])


def test_reshape_reads_an_fpn_backbones_dict_as_pytorch_grad_cam_does(faster_rcnn):
    """pytorch-grad-cam's documented Faster R-CNN recipe: `backbone` (an OrderedDict of FPN levels),
    its fasterrcnn_reshape_transform and FasterRCNNBoxScoreTarget."""
    model, x, box, label = faster_rcnn
    target = FasterRCNNBoxScoreTarget([label], box[None])
    scores = lambda out: torch.cat([target(found) for found in out])  # noqa: E731  one image
    eigen = gradcam.create_method("eigencam", model, "backbone", reshape=fasterrcnn_reshape_transform)(
        x, targets=scores, normalize="none")
    with pgc.EigenCAM(model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[target]))
    assert eigen.maps.shape == (1, 128, 128)
    assert_minmax_close(eigen.maps, ref, 2e-3)
    # Grad-CAM: the transform applied to the activations and, alike, to their gradients (a dict too)
    ours = gradcam.GradCAM(model, "backbone", reshape=fasterrcnn_reshape_transform)(x, targets=scores, normalize="none")
    store = {}
    handle = model.backbone.register_forward_hook(lambda m, i, o: store.__setitem__("levels", o))
    output = model(x)
    handle.remove()
    for level in store["levels"].values():
        level.retain_grad()
    scores(output).sum().backward()
    model.zero_grad(set_to_none=True)
    levels = store["levels"]
    a = fasterrcnn_reshape_transform({k: v.detach() for k, v in levels.items()})
    g = fasterrcnn_reshape_transform({k: torch.zeros_like(v) if v.grad is None else v.grad for k, v in levels.items()})
    by_hand = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))
    assert_relative_close(ours.raw, by_hand, 1e-4)
    # gradcam's own detection target on the same layer gives the same map
    boxed = gradcam.GradCAM(model, "backbone", reshape=fasterrcnn_reshape_transform)(
        x, targets=gradcam.Box(box.tolist(), label), normalize="none")
    assert_relative_close(boxed.raw, ours.raw, 1e-5)
    assert no_hooks(model) and all(p.grad is None for p in model.parameters())


def test_a_dict_valued_layer_without_reshape_is_an_error_that_says_to_pass_one(faster_rcnn):
    model, x, box, label = faster_rcnn
    with pytest.raises(LayerError, match="returns OrderedDict, not a tensor; pass reshape=") as error:
        gradcam.GradCAM(model, "backbone")(x, targets=gradcam.Box(box.tolist(), label))
    assert "\n" not in str(error.value) and no_hooks(model)
    with pytest.raises(LayerError, match="reshape gave a OrderedDict"):
        gradcam.GradCAM(model, "backbone", reshape=lambda levels: levels)(x, targets=gradcam.Box(box.tolist(), label))


# ----------------------------------------------------------------------------- Swin's token layers


def test_swin_token_layers_are_read_on_their_stage_grid_as_pytorch_grad_cam_reads_them():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = spread_init(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False), 0)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    layer = "layers.3.blocks.1.norm2"
    ours = gradcam.GradCAM(model, layer)(x, normalize="none")
    assert ours.raw.shape == (1, 7, 7) and float(ours.raw.max()) > 0
    with pgc.GradCAM(model, [model.get_submodule(layer)], reshape_transform=swinT_reshape_transform) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(ours.targets[0]))]))
    assert_minmax_close(ours.maps, ref, 2e-3)
    # the stage's grid is read only where it holds the tokens: 50 tokens are not its 7×7
    assert find_layout((1, 49, 768), (224, 224), 1, model, layer) == Layout("tokens", 0, (7, 7))
    assert find_layout((1, 50, 768), (224, 224), 1, model, layer) is None
    assert find_layout((1, 49, 768), (224, 224), 1, model, None) is None  # no layer named: no grid

"""Faithfulness metrics: the formulas computed directly, torchcam's protocol, and a real model."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import seeded_model
from torch import nn

import gradcam


class Linear(nn.Module):
    """y_c = Σ w_c · x over all pixels and channels: every score is computable by hand."""

    def __init__(self, size: int = 4, classes: int = 2):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.rand(classes, 2, size, size, generator=gen) + 0.1)

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.w)


def test_confidence_is_its_formula():
    model = Linear()
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1)) + 0.5
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    maps[2] = 1.0  # the whole input kept: no drop, no increase
    classes = torch.tensor([0, 1, 1])
    result = gradcam.Confidence(model, score="logit")(x, maps, classes)
    y = model(x).gather(1, classes[:, None])[:, 0].detach()
    y_masked = model(maps[:, None] * x).gather(1, classes[:, None])[:, 0].detach()
    torch.testing.assert_close(result.drop, torch.relu(y - y_masked) / (y + 1e-7))
    assert result.drop[:2].gt(0).all() and float(result.drop[2]) == pytest.approx(0, abs=1e-6)
    assert not result.increase.any()
    assert result.average_drop == pytest.approx(float(result.drop.mean()))
    # a map that doubles the input increases the confidence
    assert gradcam.Confidence(model, score="logit")(x, torch.full((3, 4, 4), 2.0), classes).increase.all()


def test_deletion_and_insertion_are_their_formulas():
    """Positions deleted best first (zero baseline), by a direct loop over k."""
    model = Linear()
    x = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(2))
    result = gradcam.DeletionInsertion(model, steps=5, score="logit")(x, maps, [1, 0])
    step = -(-16 // 5)  # 4 positions per step: k = 0, 4, 8, 12, 16
    assert result.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    for i, c in enumerate([1, 0]):
        order = maps[i].flatten().argsort(descending=True)
        for p, k in enumerate(range(0, 17, step)):
            keep = torch.ones(16)
            keep[order[:k]] = 0
            deleted = x[i] * keep.view(1, 4, 4)
            inserted = x[i] * (1 - keep).view(1, 4, 4)
            with torch.no_grad():
                expected = (model(deleted[None])[0, c], model(inserted[None])[0, c])
            assert float(result.deletion[i, p]) == pytest.approx(float(expected[0]), rel=1e-5)
            assert float(result.insertion[i, p]) == pytest.approx(float(expected[1]), rel=1e-5)
    areas = torch.trapezoid(result.deletion, result.fractions, dim=1)
    torch.testing.assert_close(result.deletion_auc, areas)
    # the map of the model's own weights deletes fastest: a lower deletion area than its reverse
    best = model.w[1].sum(0).detach().expand(2, 4, 4)
    good = gradcam.DeletionInsertion(model, steps=16, score="logit")(x, best, 1)
    bad = gradcam.DeletionInsertion(model, steps=16, score="logit")(x, -best, 1)
    assert (good.deletion_auc < bad.deletion_auc).all() and (good.insertion_auc > bad.insertion_auc).all()


def test_maps_at_layer_resolution_and_a_baseline():
    model = Linear(size=8)
    x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    small = torch.rand(1, 2, 2, generator=torch.Generator().manual_seed(2))
    full = torch.nn.functional.interpolate(small[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    metric = gradcam.DeletionInsertion(model, steps=4, score="logit", baseline=torch.tensor(0.5))
    a, b = metric(x, small, 0), metric(x, full, 0)
    torch.testing.assert_close(a.deletion, b.deletion)
    # everything deleted: the input is the baseline
    assert float(a.deletion[0, -1]) == pytest.approx(float(model(torch.full_like(x, 0.5))[0, 0].detach()), rel=1e-5)


def test_bad_arguments_are_clear_errors():
    model = Linear()
    x = torch.rand(2, 2, 4, 4)
    with pytest.raises(gradcam.OptionError, match="score"):
        gradcam.Confidence(model, score="softmax")
    with pytest.raises(gradcam.OptionError, match="maps must be one"):
        gradcam.Confidence(model)(x, torch.rand(3, 4, 4))
    with pytest.raises(gradcam.OptionError, match="steps"):
        gradcam.DeletionInsertion(model, steps=0)
    with pytest.raises(gradcam.OptionError, match="does not fit"):
        gradcam.DeletionInsertion(model, baseline=torch.zeros(5))(x, torch.rand(2, 4, 4))
    with pytest.raises(gradcam.TargetError):
        gradcam.Confidence(model)(x, torch.rand(2, 4, 4), 7)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_equal_to_torchcam(score):
    """torchcam 0.5's ClassificationMetric and DeletionInsertionMetric, given torchcam's own maps."""
    methods = pytest.importorskip("torchcam.methods")
    metrics = pytest.importorskip("torchcam.metrics")
    model = seeded_model("resnet18")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits_fn = functools.partial(torch.softmax, dim=-1) if score == "probability" else None
    extractor = methods.GradCAM(model, "layer4")
    try:
        reference = metrics.ClassificationMetric(extractor, logits_fn)
        reference.update(x)
        curves = metrics.DeletionInsertionMetric(extractor, logits_fn, steps=10, baseline=torch.tensor(0.1))
        curves.update(x)
        output = model(x)
        maps = extractor.fuse_cams(extractor(output.argmax(-1).tolist(), output)).detach()  # torchcam's maps
    finally:
        extractor.remove_hooks()
    ours = gradcam.Confidence(model, score=score)(x, maps)
    assert ours.average_drop == pytest.approx(reference.summary()["avg_drop"], rel=1e-4, abs=1e-6)
    assert ours.increase_in_confidence == reference.summary()["conf_increase"]
    areas = gradcam.DeletionInsertion(model, steps=10, score=score, baseline=torch.tensor(0.1))(x, maps)
    expected = curves.summary()
    span = float(areas.deletion.abs().max())  # tolerances scaled by the scores' size
    assert float(areas.deletion_auc.mean()) == pytest.approx(expected["deletion_auc"], abs=1e-5 * span)
    assert float(areas.insertion_auc.mean()) == pytest.approx(expected["insertion_auc"], abs=1e-5 * span)


def test_grad_cam_is_faithful_on_the_bundled_model_and_real_photos():
    """Trained and real: deleting what Grad-CAM points at lowers the class's probability faster, and
    inserting it raises it faster, than the same map turned upside down."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())])
    out = gradcam.GradCAM(bundle)(x)
    metric = gradcam.DeletionInsertion(bundle.module, steps=10)
    good, bad = metric(x, out.maps, out.targets), metric(x, 1 - out.maps, out.targets)
    assert (good.deletion_auc < bad.deletion_auc).all()
    assert (good.insertion_auc > bad.insertion_auc).all()


def rise_causal_metric(model, image: torch.Tensor, explanation: torch.Tensor, mode: str, step: int, c: int):
    """The RISE authors' ``CausalMetric.single_run`` loop, written out: a softmax model, pixels in the order
    of the explanation, ``step`` of them per step, the curve's area by their ``auc``."""
    from scipy.ndimage import gaussian_filter

    n = image[0, 0].numel()
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = torch.zeros(3, 3, 11, 11)
    for ch in range(3):
        kernel[ch, ch] = torch.from_numpy(gaussian_filter(impulse, 5)).float()
    blurred = torch.nn.functional.conv2d(image, kernel, padding=5)
    start, finish = (image.clone(), torch.zeros_like(image)) if mode == "del" else (blurred, image.clone())
    n_steps = (n + step - 1) // step
    scores = np.empty(n_steps + 1)
    order = torch.from_numpy(np.argsort(explanation.reshape(-1).numpy())[::-1].copy())
    with torch.no_grad():
        for i in range(n_steps + 1):
            scores[i] = float(torch.softmax(model(start), 1)[0, c])
            if i < n_steps:
                coords = order[step * i : step * (i + 1)]
                start.view(1, 3, n)[0, :, coords] = finish.view(1, 3, n)[0, :, coords]
    return scores, (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def test_the_rise_protocol_is_the_papers_loop():
    """protocol="rise" against the authors' procedure: zeros for deletion, their 11 × 11, σ 5 blur to insert
    into, the softmax probability, the area over [0, 1] with a last step that is not full."""
    model = seeded_model("resnet18").eval()
    x = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(3))
    maps = torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(4))  # no ties
    ours = gradcam.DeletionInsertion(model, steps=7, protocol="rise", batch_size=4)(x, maps, torch.tensor([2, 5]))
    step = -(-400 // 7)  # 58 pixels a step: 7 steps, the last of 52
    for i, c in enumerate((2, 5)):
        for curve, area, mode in ((ours.deletion, ours.deletion_auc, "del"), (ours.insertion, ours.insertion_auc,
                                                                               "ins")):
            scores, auc = rise_causal_metric(model, x[i : i + 1].clone(), maps[i], mode, step, c)
            assert np.abs(curve[i].numpy() - scores).max() <= 1e-5
            assert float(area[i]) == pytest.approx(auc, abs=1e-5)
    assert torch.allclose(ours.fractions, torch.arange(8) / 7)
    torchcam = gradcam.DeletionInsertion(model, steps=7)(x, maps, torch.tensor([2, 5]))
    assert not torch.allclose(torchcam.fractions, ours.fractions)  # k / N: the protocols differ
    with pytest.raises(gradcam.OptionError, match="protocol"):
        gradcam.DeletionInsertion(model, protocol="lime")
    with pytest.raises(gradcam.OptionError, match="sets its own baselines"):
        gradcam.DeletionInsertion(model, protocol="rise", baseline=torch.tensor(0.1))


@pytest.mark.parametrize("name", ["deletion", "road"])
def test_bf16_runs_every_copy_in_bf16_and_stays_near_fp32(name):
    """precision="bf16": every forward pass of the metric under autocast (the convolutions give bfloat16),
    the scoring layer on float32 inputs, float32 scores; the curves move, by less than a tenth of their
    range."""
    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(7))
    options = {"score": "logit", "steps": 8, "percentiles": (30, 70), "noise": 0}
    seen = []
    hooks = [model.conv1.register_forward_hook(lambda module, args, out: seen.append(("conv", out.dtype))),
             model.fc.register_forward_hook(lambda module, args, out: seen.append(("fc", args[0].dtype)))]
    try:
        low = gradcam.metrics.create_metric(name, model, precision="bf16", **options)(x, maps, torch.tensor([1, 2]))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) >= 4 and set(seen) == {("conv", torch.bfloat16), ("fc", torch.float32)}
    full = gradcam.metrics.create_metric(name, model, precision="fp32", **options)(x, maps, torch.tensor([1, 2]))
    for curve, (_, expected) in full.curves().items():
        got = low.curves()[curve][1]
        assert got.dtype == torch.float32
        span = float(expected.max() - expected.min())
        assert 0 < float((got - expected).abs().max()) <= 0.1 * span, curve


def test_auto_precision_and_the_memory_format():
    """"auto" is bf16 on a CPU that computes it natively, else fp32, to the bit; channels-last input
    reaches the model under "auto" and "channels_last" (a convolution network), and changes the scores by
    float rounding only."""
    from gradcam.engine.precision import fast_bf16

    model = seeded_model("resnet18")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(9))

    def run(**options):
        layouts = []
        hook = model.conv1.register_forward_pre_hook(
            lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        try:
            result = gradcam.DeletionInsertion(model, steps=6, score="logit", **options)(x, maps, 3)
        finally:
            hook.remove()
        return result, set(layouts)

    native = "bf16" if fast_bf16(torch.device("cpu")) else "fp32"
    assert torch.equal(run(precision="auto")[0].deletion, run(precision=native)[0].deletion)
    contiguous, seen = run(memory_format="contiguous")
    assert seen == {False}
    for memory_format in ("auto", "channels_last"):
        result, seen = run(memory_format=memory_format)
        assert seen == {True}
        span = float(contiguous.deletion.abs().max())
        torch.testing.assert_close(result.deletion, contiguous.deletion, rtol=0, atol=1e-5 * span)


@pytest.mark.parametrize("metric", [gradcam.DeletionInsertion, gradcam.Confidence, gradcam.metrics.ROAD])
def test_bad_precision_or_memory_format_is_a_clear_error(metric):
    model = Linear()
    with pytest.raises(gradcam.OptionError, match=r"precision must be one of fp32, bf16, fp16, auto, got 'fp8'"):
        metric(model, precision="fp8")
    with pytest.raises(gradcam.OptionError, match=r"memory_format must be one of .*, got 'nhwc'"):
        metric(model, memory_format="nhwc")
    assert "precision" in gradcam.metrics.metric_info(metric.metric_name).options()

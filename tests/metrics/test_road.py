"""ROAD: the imputer against a direct sparse solve, both protocols against their references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import seeded_model

import gradcam
from gradcam.metrics import imputation
from gradcam.metrics.imputation import noisy_linear_impute
from gradcam.metrics.road import ROAD

OFFSETS = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6, (0, 1): 1 / 6, (1, -1): 1 / 12,
           (1, 0): 1 / 6, (1, 1): 1 / 12}


def direct_solve(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The imputation by its definition: each removed pixel the weighted mean of its neighbours in the
    image, one sparse system per channel, solved by scipy's direct solver."""
    sparse = pytest.importorskip("scipy.sparse")
    linalg = pytest.importorskip("scipy.sparse.linalg")
    h, w = removed.shape
    unknown = {pos: i for i, pos in enumerate(zip(*np.nonzero(removed)))}
    a = sparse.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), image.shape[0]))
    for (y, x), i in unknown.items():
        for (dy, dx), weight in OFFSETS.items():
            if 0 <= y + dy < h and 0 <= x + dx < w:
                a[i, i] += weight
                if (y + dy, x + dx) in unknown:
                    a[i, unknown[y + dy, x + dx]] -= weight
                else:
                    b[i] += weight * image[:, y + dy, x + dx]
    solution = linalg.spsolve(a.tocsc(), b).reshape(len(unknown), -1)
    out = image.copy()
    for (y, x), i in unknown.items():
        out[:, y, x] = solution[i]
    return out


def test_the_imputation_is_the_direct_sparse_solve():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 19, 23, generator=gen)
    removed = torch.rand(3, 19, 23, generator=gen) < torch.tensor([0.3, 0.9, 0.0]).view(3, 1, 1)
    removed[2, 2:17, 3:21] = True  # one big hole: many conjugate-gradient iterations without the multigrid
    ours = noisy_linear_impute(x, removed)
    for i in range(3):
        expected = direct_solve(x[i].double().numpy(), removed[i].numpy())
        span = float(x[i].abs().max())
        assert np.abs(ours[i].double().numpy() - expected).max() <= 1e-5 * span
    assert torch.equal(ours[~removed.unsqueeze(1).expand_as(x)], x[~removed.unsqueeze(1).expand_as(x)])


def test_the_multigrid_on_odd_sizes_is_the_direct_sparse_solve_in_few_iterations():
    """Sizes that halve to odd grids (45 × 61 -> 23 × 31 -> 12 × 16 -> 6 × 8), holes from one pixel wide to
    nearly the whole image; and at 96², 13 iterations where the V-cycle with piecewise-constant
    interpolation took 17 (and plain conjugate gradients hundreds)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 45, 61, generator=gen)
    removed = torch.rand(3, 45, 61, generator=gen) < torch.tensor([0.7, 0.05, 0.5]).view(3, 1, 1)
    removed[0, 3:40, 2:58] = True
    removed[1, :, 30] = True  # a line across the image
    removed[2, 0, :] = removed[2, :, -1] = True  # along the edges
    ours = noisy_linear_impute(x, removed, max_iter=15)
    for i in range(3):
        expected = direct_solve(x[i].double().numpy(), removed[i].numpy())
        assert np.abs(ours[i].double().numpy() - expected).max() <= 1e-5 * float(x[i].abs().max())
    big = torch.rand(2, 96, 96, generator=gen) < 0.5
    big[0, 4:-4, 4:-4] = True
    big[1] = torch.rand(96, 96, generator=gen) < 0.95
    noisy_linear_impute(torch.randn(2, 3, 96, 96, generator=gen), big, max_iter=15)  # raises past 15


def test_the_stencil_and_the_grid_transfers():
    """The separable stencil is the 3 × 3 convolution of the weights; restriction is the transpose of the
    bilinear interpolation (so the preconditioner is symmetric), on even, odd and oblong grids; the
    interpolation reproduces a ramp inside the image."""
    gen = torch.Generator().manual_seed(4)
    t = torch.randn(2, 3, 9, 14, dtype=torch.float64, generator=gen)
    kernel = imputation.neighbour_kernel()
    direct = torch.nn.functional.conv2d(t.view(6, 1, 9, 14), kernel, padding=1).view(2, 3, 9, 14)
    torch.testing.assert_close(imputation.neighbours(t), direct, rtol=0, atol=1e-14)
    for fine, coarse in (((224, 224), (112, 112)), ((7, 7), (4, 4)), ((13, 6), (7, 3)), ((5, 9), (3, 5))):
        c = torch.randn(2, 3, *coarse, dtype=torch.float64, generator=gen)
        f = torch.randn(2, 3, *fine, dtype=torch.float64, generator=gen)
        lhs = (imputation._prolong(c, fine) * f).sum()
        rhs = (c * imputation._restrict(f, coarse)).sum()
        assert float(lhs - rhs) == pytest.approx(0, abs=1e-10 * float(lhs.abs()))
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 1, 8, 8)
    fine = imputation._prolong(ramp, (16, 16))[0, 0, :, 1:-1]  # inside: pixel j at coarse position j/2 − 1/4
    torch.testing.assert_close(fine, (torch.arange(1, 15, dtype=torch.float64) / 2 - 0.25).expand(16, 14))


def test_equal_to_pytorch_grad_cams_imputer_and_the_noise_is_seeded():
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 40, 40, generator=gen)
    removed = torch.rand(1, 40, 40, generator=gen) < 0.6
    expected = road.NoisyLinearImputer(noise=0)(x[0], (~removed[0]).float())  # its mask: 1 = kept
    assert (noisy_linear_impute(x, removed)[0] - expected).abs().max() <= 1e-5 * float(x.abs().max())
    noisy = [noisy_linear_impute(x, removed, noise=0.5, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    drift = (noisy[0] - noisy_linear_impute(x, removed))[removed.unsqueeze(1).expand_as(x)]
    assert float(drift.std()) == pytest.approx(0.5, rel=0.1)
    every = noisy_linear_impute(x, torch.ones(1, 40, 40, dtype=torch.bool))
    assert torch.equal(every, torch.zeros_like(x))  # nothing left to average


def smooth_maps(count: int, size: int, seed: int) -> torch.Tensor:
    """Maps like a CAM's: coarse random values upsampled, in [0, 1], no ties."""
    coarse = torch.rand(count, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    maps = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return gradcam.engine.functional.normalize(maps)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_equal_to_pytorch_grad_cams_road_classes(score, monkeypatch):
    """ROADMostRelevantFirst, ROADLeastRelevantFirst and ROADCombined with noise 0, per percentile."""
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    outputs = pytest.importorskip("pytorch_grad_cam.utils.model_targets")

    class Noiseless(road.NoisyLinearImputer):
        def __init__(self, *args, **kwargs):
            super().__init__(noise=0)

    monkeypatch.setattr(road, "NoisyLinearImputer", Noiseless)  # its ROAD classes take no noise argument
    model = seeded_model("resnet18").eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps = smooth_maps(2, 32, seed=3)
    classes = [1, 7]
    target = outputs.ClassifierOutputSoftmaxTarget if score == "probability" else outputs.ClassifierOutputTarget
    targets = [target(c) for c in classes]
    percentiles = (20, 50, 80)
    ours = ROAD(model, percentiles=percentiles, protocol="pytorch-grad-cam", noise=0, score=score)(
        x, maps, torch.tensor(classes))
    span = float(ours.original.abs().max())
    assert torch.allclose(ours.fractions, torch.tensor([0.2, 0.5, 0.8]))
    for i, p in enumerate(sorted(percentiles, reverse=True)):  # 80th percentile: 20 % removed
        morf = road.ROADMostRelevantFirst(p)(x, maps.numpy(), targets, model)
        lerf = road.ROADLeastRelevantFirst(p)(x, maps.numpy(), targets, model)
        assert np.abs((ours.morf[:, i] - ours.original).numpy() - morf).max() <= 1e-5 * span
        assert np.abs((ours.lerf[:, i] - ours.original).numpy() - lerf).max() <= 1e-5 * span
    combined = road.ROADCombined(list(percentiles))(x, maps.numpy(), targets, model)
    assert np.abs(ours.combined.numpy() - combined).max() <= 1e-5 * span


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_the_copies_give_the_same_scores_however_they_are_batched(noise):
    """An image's MoRF and LeRF copies are imputed and scored batch_size at a time: one copy at a time,
    or batches that straddle two images, give the same curves, with the seeded noise too (an odd size:
    the generator's draws of a batch are not the draws of its images one by one)."""
    model = seeded_model("resnet18").eval()
    x = torch.randn(2, 3, 23, 23, generator=torch.Generator().manual_seed(6))
    maps = smooth_maps(2, 23, seed=7)
    runs = [ROAD(model, percentiles=(25, 60), noise=noise, score="logit", batch_size=size)(x, maps,
                                                                                          torch.tensor([4, 9]))
            for size in (1, 3, 32)]
    span = float(runs[0].original.abs().max())
    for run in runs[1:]:
        torch.testing.assert_close(run.morf, runs[0].morf, rtol=0, atol=1e-5 * span)
        torch.testing.assert_close(run.lerf, runs[0].lerf, rtol=0, atol=1e-5 * span)
    assert not torch.allclose(runs[0].morf, runs[0].lerf)


def test_the_authors_protocol_removes_exactly_its_share_and_scales_the_noise():
    """The "road" protocol by a direct loop: ⌊N·p⌋ pixels removed, the most relevant for MoRF and the least
    for LeRF, imputed; the noise is σ in pixels, σ/std on the normalised input."""
    model = seeded_model("resnet18").eval()
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    ranks = torch.randperm(2 * 576, generator=torch.Generator().manual_seed(5)).view(2, 24, 24).float()
    maps = ranks / ranks.max()  # no ties, steps of ~1e-3: the 1e-4 jitter cannot reorder them
    ours = ROAD(model, percentiles=(30, 70), noise=0, score="logit")(x, maps, torch.tensor([0, 3]))
    with torch.no_grad():
        for j, p in enumerate((30, 70)):
            count = int(576 * p / 100)
            for curve, most in ((ours.morf, True), (ours.lerf, False)):
                order = maps.flatten(1).argsort(dim=1, descending=most)[:, :count]
                removed = torch.zeros(2, 576, dtype=torch.bool).scatter_(1, order, True).view(2, 24, 24)
                assert int(removed[0].sum()) == count
                logits = model(torch.from_numpy(np.stack([direct_solve(x[i].double().numpy(), removed[i].numpy())
                                                          for i in range(2)])).float())
                expected = logits[[0, 1], [0, 3]]
                assert torch.allclose(curve[:, j], expected, atol=1e-4 * float(expected.abs().max()))
    std = torch.tensor([0.5, 0.25, 0.2])
    metric = ROAD(model, percentiles=(50,), noise=0.1, std=std)
    assert torch.allclose(metric._noise(x), 0.1 / std.double())
    assert ROAD(model, protocol="pytorch-grad-cam", noise=0.1, std=std)._noise(x) == 0.1  # its σ: normalised


def test_grad_cam_beats_its_opposite_on_the_bundled_model_and_a_photo():
    """Trained and real: removing what Grad-CAM points at lowers the class more than removing the rest
    (MoRF below LeRF), and the map turned upside down scores worse combined; by name from the registry."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([Image.fromarray(skdata.chelsea())])
    out = gradcam.GradCAM(bundle)(x)
    assert "road" in gradcam.metrics.list_metrics("faithfulness")
    metric = gradcam.metrics.create_metric("road", bundle.module, percentiles=(50,), std=bundle.preprocess.std,
                                           steps=5)  # steps is deletion's: left out
    good, bad = metric(x, out.maps, out.targets), metric(x, 1 - out.maps, out.targets)
    assert (good.morf.mean(1) < good.lerf.mean(1)).all() and (good.combined > bad.combined).all()
    assert set(gradcam.metrics.per_sample("road", good)) == {"road_morf", "road_lerf", "road_combined"}
    assert set(good.curves()) == {"ROAD MoRF", "ROAD LeRF"}


def test_bad_options_are_clear_errors():
    model = seeded_model("resnet18")
    with pytest.raises(gradcam.OptionError, match="protocol"):
        ROAD(model, protocol="roar")
    with pytest.raises(gradcam.OptionError, match="percentiles"):
        ROAD(model, percentiles=(0, 50))
    with pytest.raises(gradcam.OptionError, match="noise"):
        ROAD(model, noise=-1)
    with pytest.raises(gradcam.OptionError, match="images"):
        ROAD(model)(torch.zeros(1, 1, 30), torch.zeros(1, 30))
    with pytest.raises(gradcam.OptionError, match="std"):
        ROAD(model, std=(1, 2))._noise(torch.zeros(1, 3, 8, 8))

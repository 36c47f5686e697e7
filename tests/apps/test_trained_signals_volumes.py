"""Trained, small, real, beyond images: a Conv1d network on signals, a Conv3d network on volumes and one on
video clips, trained once per session on data with known answers, and the pointing game on held-out samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradcam
from gradcam.apps.synthetic.shapes import make_clips, make_signals, make_volumes
from gradcam.apps.synthetic.small_nets import small_net
from gradcam.apps.synthetic.train import fit, flips

pytestmark = pytest.mark.slow  # trains a small model once per session


def peaks(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The index of each map's maximum, unravelled over the input's spatial axes: (N, axes)."""
    out = gradcam.GradCAM(model.eval())(x)
    assert out.layers == ["7"]  # the automatic layer: the last convolution's ReLU, at a quarter of the input
    flat = out.maps.flatten(1).argmax(1)
    return torch.stack(torch.unravel_index(flat, x.shape[2:]), dim=1)


@pytest.fixture(scope="module")
def signals():
    x, y, spans = make_signals(1500, length=256, seed=0)
    held = np.arange(len(x)) < 200
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = fit(small_net(1), x[~held], y[~held], epochs=30, lr=3e-3)
    return model, x[held], y[held], torch.from_numpy(spans[held])


def test_a_trained_conv1d_network_points_at_the_bump(signals):
    """The map's peak lies on the bump (its extent ± 2 samples, half the network's stride of 4) on
    ≥ 85 % of held-out signals (90.5 % in our run), far above the untrained network (28.5 %)."""
    model, x, y, spans = signals
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.9

    def score(net):
        t = peaks(net, x)[:, 0]
        return float(((t >= spans[:, 0] - 2) & (t < spans[:, 1] + 2)).float().mean())

    trained, untrained = score(model), score(small_net(1))
    assert trained >= 0.85 and trained >= untrained + 0.3, (trained, untrained)


@pytest.fixture(scope="module")
def volumes():
    x, y, boxes = make_volumes(600, size=24, seed=0)
    held = np.arange(len(x)) < 100
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = fit(small_net(3), x[~held], y[~held], epochs=40, lr=3e-3, augment=flips)
    return model, x[held], y[held], torch.from_numpy(boxes[held])


def test_a_trained_conv3d_network_points_at_the_object(volumes):
    """Cubes vs spheres among bright rods, trained with random flips: the map's peak lies in the object's
    box (± 2 voxels, half the network's stride of 4) on ≥ 85 % of held-out volumes (98 % in our run;
    77 % without the flips), against 5 % for the untrained network."""
    model, x, y, boxes = volumes
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.85

    def score(net):
        p = peaks(net, x)
        inside = (p >= boxes[:, :3] - 2) & (p < boxes[:, 3:] + 2)
        return float(inside.all(dim=1).float().mean())

    trained, untrained = score(model), score(small_net(3))
    print(f"volumes: pointing trained {trained:.3f}, untrained {untrained:.3f}")
    assert trained >= 0.85 and trained >= untrained + 0.5, (trained, untrained)


@pytest.fixture(scope="module")
def clips():
    x, y, boxes = make_clips(700, frames=8, size=32, seed=0)
    held = np.arange(len(x)) < 100
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = fit(small_net(3, pool_size=(1, 2, 2)), x[~held], y[~held], epochs=5, lr=3e-3)
    return model, x[held], y[held], torch.from_numpy(boxes[held])


def test_a_trained_video_network_follows_the_moving_disc_frame_by_frame(clips):
    """Only motion tells the class (a disc moving right or left; a still disc and bars as bright): in each
    frame, the map's peak lies on the moving disc (± 2 pixels) for ≥ 85 % of the frames of held-out clips
    (100 % in our run, 99.8 % with seed 1; untrained 20.9 %)."""
    model, x, y, boxes = clips
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.9

    def score(net):
        out = gradcam.GradCAM(net.eval())(x)
        assert out.maps.shape == x[:, 0].shape  # (N, T, H, W): a map for every frame
        peak = out.maps.flatten(2).argmax(2)  # (N, T)
        row, col = peak // x.shape[-1], peak % x.shape[-1]
        inside = ((col >= boxes[..., 0] - 2) & (col <= boxes[..., 2] + 2)
                  & (row >= boxes[..., 1] - 2) & (row <= boxes[..., 3] + 2))
        return float(inside.float().mean())

    trained, untrained = score(model), score(small_net(3, pool_size=(1, 2, 2)))
    print(f"clips: per-frame pointing trained {trained:.3f}, untrained {untrained:.3f}")
    assert trained >= 0.85 and trained >= untrained + 0.3, (trained, untrained)


def test_the_generators_answers_are_where_the_objects_are():
    x, y, spans = make_signals(6, length=128, seed=3)
    again = make_signals(6, length=128, seed=3)
    assert np.array_equal(x, again[0]) and np.array_equal(spans, again[2])
    for signal, label, (start, stop) in zip(x[:, 0], y, spans):  # the bump: up for class 0, down for 1
        sign = 1 if label == 0 else -1
        third = (stop - start) // 3
        centre = sign * signal[start + third:stop - third].mean()  # the Gaussian's top third
        assert centre > sign * np.median(signal) + 0.25
    v, _, boxes = make_volumes(4, size=20, seed=1)
    for volume, (z0, y0, x0, z1, y1, x1) in zip(v[:, 0], boxes):
        assert volume[z0:z1, y0:y1, x0:x1].mean() > volume.mean() + 0.3

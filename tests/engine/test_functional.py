import pytest
import torch

from gradcam.engine import functional as Fn
from gradcam.errors import GradCAMError


def test_gap_weights_and_weighted_sum_by_hand():
    grads = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]], [[-2.0, 0.0], [0.0, 2.0]]]])  # (1, 2, 2, 2)
    assert Fn.gap_weights(grads).tolist() == [[4.0, 0.0]]
    acts = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[9.0, 9.0], [9.0, 9.0]]]])
    assert Fn.weighted_sum(torch.tensor([[2.0, -1.0]]), acts).tolist() == [[[-7.0, -9.0], [-9.0, -7.0]]]


def test_normalize_modes():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
    assert torch.allclose(Fn.normalize(maps, "minmax"), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    assert torch.allclose(Fn.normalize(maps, "max"), torch.tensor([[[0.2, 0.4], [0.6, 1.0]]]))
    assert torch.equal(Fn.normalize(maps, "none"), maps)


def test_normalize_constant_map_is_zero_not_nan():
    out = Fn.normalize(torch.zeros(2, 3, 3), "minmax")
    assert not out.isnan().any() and (out == 0).all()
    assert (Fn.normalize(torch.full((1, 2, 2), 4.0), "minmax") == 0).all()


def test_normalize_is_per_image():
    maps = torch.stack([torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 100.0]])])
    assert torch.allclose(Fn.normalize(maps, "minmax")[:, 0, 1], torch.ones(2))


def test_unknown_normalize_names_the_choices():
    with pytest.raises(GradCAMError, match="minmax, max, none"):
        Fn.normalize(torch.zeros(1, 2, 2), "zscore")


def test_upsample_is_bilinear_half_pixel():
    maps = torch.tensor([[[0.0, 1.0]]])  # (1, 1, 2)
    up = Fn.upsample(maps, (1, 4))
    assert torch.allclose(up, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))


def test_fuse_averages_normalised_layers():
    a = torch.tensor([[[0.0, 2.0]]])
    b = torch.tensor([[[0.0, 0.0], [0.0, 10.0]]])
    fused = Fn.fuse([a, b], (2, 2), "minmax")
    expected = Fn.normalize((Fn.normalize(Fn.upsample(a, (2, 2))) + Fn.normalize(b)) / 2)
    assert torch.allclose(fused, expected)

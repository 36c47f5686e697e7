"""Model parameter randomisation: Spearman as scipy's, the protocol as quantus's MPRT, the paper's finding."""

from __future__ import annotations

import pytest
import torch
from conftest import seeded_model
from torch import nn

import gradcam
from gradcam.metrics.sanity import ParameterRandomisation, spearman


def test_spearman_is_scipys_with_ties_and_constants():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 5, (4, 40), generator=gen).float(), torch.rand(4, 40, generator=gen)
    expected = [stats.spearmanr(a[i].numpy(), b[i].numpy())[0] for i in range(4)]
    torch.testing.assert_close(spearman(a, b), torch.tensor(expected, dtype=torch.float32))
    assert torch.isnan(spearman(torch.zeros(1, 9), torch.rand(1, 9))).all()  # a constant map: no ranking


@pytest.mark.parametrize("order", ["top_down", "independent"])
def test_equal_to_quantus_mprt_and_the_model_untouched(order):
    quantus = pytest.importorskip("quantus")
    model = seeded_model("resnet18")
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    ours = ParameterRandomisation("gradcam", layer="layer4", order=order)(model, x)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a copy was randomised
    assert torch.equal(torch.random.get_rng_state(), state)

    def explain(model, inputs, targets, **kwargs):
        maps = gradcam.GradCAM(model, "layer4")(torch.as_tensor(inputs), torch.as_tensor(targets),
                                                normalize="none").maps
        return maps.numpy()

    classes = gradcam.GradCAM(model, "layer4")(x).targets.numpy()
    scores = quantus.MPRT(layer_order=order, disable_warnings=True)(model=model, x_batch=x.numpy(), y_batch=classes,
                                                 a_batch=None,
                                                 explain_func=explain, device="cpu")
    theirs = {k: v for k, v in scores.items() if k != "original"}
    assert list(theirs) == ours.layers and len(ours.layers) == 41  # every layer with parameters
    reference = torch.tensor([theirs[name] for name in ours.layers], dtype=torch.float32)
    assert torch.equal(torch.isnan(reference), torch.isnan(ours.similarity))
    # quantus divides each map by its maximum first, which can merge two nearly equal values into a tie
    torch.testing.assert_close(ours.similarity, reference, atol=1e-3, rtol=0, equal_nan=True)


def test_guided_backprop_fails_the_check_and_grad_cam_passes_on_a_trained_model():
    """Adebayo et al.'s finding, on the bundled ImageNet model and three real photos: with every layer
    re-initialised, guided backpropagation's maps still rank the pixels like the trained model's (they
    show the image's edges), Grad-CAM's no longer do."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([Image.fromarray(getattr(skdata, n)()) for n in ("chelsea", "coffee", "rocket")])
    guided = ParameterRandomisation("guided-backprop", layer_by_layer=False)(bundle.module, x)
    grad_cam = ParameterRandomisation("gradcam", layer_by_layer=False)(bundle.module, x)
    assert len(guided.layers) == 1 and guided.layers == grad_cam.layers  # the last layer of the cascade
    assert (guided.last > 0.1).all()
    assert not (grad_cam.last > 0.1).any()  # negative, or NaN where the random network's map is all zero


def test_bad_options_are_clear_errors():
    with pytest.raises(gradcam.OptionError, match="order"):
        ParameterRandomisation(order="random")
    with pytest.raises(gradcam.OptionError, match="layer name"):
        ParameterRandomisation(layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(gradcam.OptionError, match="cascading"):
        ParameterRandomisation(order="independent", layer_by_layer=False)
    with pytest.raises(gradcam.OptionError, match="no layer with parameters"):
        ParameterRandomisation("gradcam", layer="0")(nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                                                     torch.rand(1, 2, 4, 4))

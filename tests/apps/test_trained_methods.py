"""The new methods on a trained model with known answers (issue 26): the clean shapes CNN of ``gradcam train``
(``trained_shapes``), 24 held-out images drawn with another seed, each explained for its true class. A
class-sensitive method's peak lies on the object (its mask, not its box) for >= 85 % of them."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import gradcam
from gradcam.apps.synthetic.shapes import draw_shapes
from gradcam.engine.methods import create_method, method_info
from gradcam.metrics.localisation import pointing_game

pytestmark = pytest.mark.slow  # the trained shapes model, once per session

NEW = ("eigengradcam", "kpcacam", "fem", "shapleycam", "finercam", "sscam", "iscam", "rise", "reciprocam",
       "fullgrad", "legrad")
# Small budgets (the map's peak, not its detail, is checked). RISE scores the class logit: the model is so
# sure (p ~ 1 under most masks) that the paper's probability is nearly flat at a small budget (on these 24
# images: 75 % with it at 100 and at 300 masks, 96 % with the logit at 100).
BUDGETS = {"sscam": {"num_samples": 2, "max_channels": 16}, "iscam": {"num_samples": 2, "max_channels": 16},
           "rise": {"masks": 100, "cell": 4, "probabilities": False}}
# FullGrad falls short of the 85 %: its peak is on the shape for 10 of these 24 images (42-67 % over
# four held-out draws; pytorch-grad-cam's FullGrad gives the same maps, max |diff| 5e-7, and the same 60 % on
# 40 other images).
# Its sum of every biased layer's maps, the first layers' at full resolution and each channel scaled alike,
# also lights up the clutter's edges. It must still point far above chance: a random peak lands on the
# object about 9 % of the time.
FLOORS = {"fullgrad": 0.3}


@pytest.fixture(scope="module")
def held_out(trained_shapes):
    """The trained model, and 24 images it never saw (12 circles, 12 squares): the batch, labels, masks."""
    bundle = gradcam.load_model(str(trained_shapes(False)))
    images, labels, _, masks = draw_shapes(24, 64, seed=11)
    x, labels = bundle.preprocess.batch([Image.fromarray(image) for image in images]), torch.as_tensor(labels[:, 0])
    with torch.no_grad():
        assert (bundle.module(x).argmax(1) == labels).float().mean() >= 0.9  # right, so its reasons can be checked
    return bundle.module, x, labels, torch.as_tensor(masks[:, 0])


@pytest.mark.parametrize("name", NEW)
def test_a_class_sensitive_method_points_at_the_object(held_out, name):
    model, x, labels, masks = held_out
    if method_info(name)["class_free"]:
        pytest.skip(f"{name} is class-free: one map whatever the class, so a class cannot steer its peak")
    cam = create_method(name, model, None, **BUDGETS.get(name, {}))
    why = cam.unsuitable(x)
    if why:
        pytest.skip(why)
    maps = cam(x, targets=labels).maps
    assert maps.shape == (24, 64, 64)
    share = float(pointing_game(maps, masks).float().mean())
    assert share >= FLOORS.get(name, 0.85), (name, share)

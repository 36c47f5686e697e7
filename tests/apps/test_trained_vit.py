"""Trained, small, real: a vision transformer (class token, patch 8, two blocks of four heads) trained once
per session on 64-px shapes (99 % held-out accuracy), and the pointing game at its automatic layer, the
last block's first norm: HiResCAM's peak is on the shape for 92.7 % of 300 held-out images on one machine
and 83.7 % on another (untrained 40 %), Grad-CAM's for 55–59 %. The seeded training rounds differently on
different CPUs and with a different number of torch threads (one per test worker under `make test`), and 30
epochs carry the difference into the model: the test asks HiResCAM for 75 % and a 30-point lead over the
untrained network, Grad-CAM for a 10-point lead and less than HiResCAM."""

from __future__ import annotations

import pytest
import torch

import gradcam
from gradcam.apps.synthetic.shapes import draw_shapes
from gradcam.apps.synthetic.small_nets import small_vit
from gradcam.apps.synthetic.train import fit, flips

pytestmark = pytest.mark.slow  # trains a small model once per session

timm = pytest.importorskip("timm")

HELD = 300


@pytest.fixture(scope="module")
def shapes_vit():
    images, labels, boxes, _ = draw_shapes(3000 + HELD, size=64, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    y, boxes = torch.from_numpy(labels[:, 0]), torch.from_numpy(boxes[:, 0])
    model = fit(small_vit(), x[HELD:], y[HELD:], epochs=30, lr=1e-3, weight_decay=0.05, augment=flips)
    return model, x[:HELD], y[:HELD], boxes[:HELD]


def hits(model, method: str, x: torch.Tensor, boxes: torch.Tensor, margin: int = 4) -> float:
    """Share of maps whose peak lies in the object's box ± ``margin`` pixels (half a patch: the pointing
    game's 15 px at 224 px, scaled to 64 px)."""
    out = gradcam.create_method(method, model)(x)
    assert out.layers == ["blocks.1.norm1"]
    peak = out.maps.flatten(1).argmax(1)
    row, col = peak // x.shape[-1], peak % x.shape[-1]
    inside = ((col >= boxes[:, 0] - margin) & (col <= boxes[:, 2] + margin)
              & (row >= boxes[:, 1] - margin) & (row <= boxes[:, 3] + margin))
    return float(inside.float().mean())


def test_a_trained_vit_points_at_the_shape(shapes_vit):
    model, x, y, boxes = shapes_vit
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    scores = {m: (hits(model, m, x, boxes), hits(small_vit().eval(), m, x, boxes)) for m in ("hirescam", "gradcam")}
    print(f"accuracy {accuracy:.3f}; pointing (trained, untrained): {scores}")
    assert accuracy >= 0.9
    trained, untrained = scores["hirescam"]
    assert trained >= 0.75 and trained >= untrained + 0.3, scores
    # Grad-CAM's channel weights average the gradient over all tokens, and a class-token ViT's gradient
    # reaches the patch tokens through the class token's attention: the average keeps what the tokens
    # hold, not where the class token looks, so its peak is less often on the shape.
    assert scores["gradcam"][0] >= scores["gradcam"][1] + 0.1 and scores["gradcam"][0] < trained, scores

"""Trained, small, real, beyond classification: a small segmenter and a small detector trained once per
session on two-object shapes (a circle and a square in every image), and the pointing game per object:
each object's map puts its peak on that object, not on the other one. Segmenter: 99.3 % of 300 held-out
objects in our run (untrained 15 %; 91 % of object pixels classified right)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcam
from gradcam import ClassRegion
from gradcam.apps.synthetic.shapes import draw_shapes
from gradcam.apps.synthetic.small_nets import SmallDetector, fit_detector, small_segmenter
from gradcam.apps.synthetic.train import fit

pytestmark = pytest.mark.slow  # trains a small model once per session

HELD = 150


@pytest.fixture(scope="module")
def segmenter():
    images, labels, boxes, masks = draw_shapes(1200 + HELD, size=64, seed=5, objects=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    target = np.zeros(masks.shape[:1] + masks.shape[2:], np.int64)
    for j in range(2):  # class 1 + the object's class on its pixels
        target[masks[:, j]] = np.broadcast_to(labels[:, j, None, None] + 1, target.shape)[masks[:, j]]
    model = fit(small_segmenter(), x[HELD:], torch.from_numpy(target[HELD:]), epochs=12, lr=3e-3, batch_size=16)
    return model, x[:HELD], labels[:HELD], boxes[:HELD], torch.from_numpy(target[:HELD])


def pointing(model, x, labels, boxes, margin: int = 2) -> float:
    """Share of objects whose class region's map (at the last ReLU) peaks in the object's box ± margin."""
    cam = gradcam.GradCAM(model, "7")
    hits = []
    for cls in (0, 1):
        out = cam(x, targets=ClassRegion(cls + 1))
        peak = out.maps.flatten(1).argmax(1)
        row, col = (peak // 64).numpy(), (peak % 64).numpy()
        box = boxes[np.arange(len(x)), (labels == cls).argmax(1)]  # that class's object in each image
        hits += list((col >= box[:, 0] - margin) & (col <= box[:, 2] + margin)
                     & (row >= box[:, 1] - margin) & (row <= box[:, 3] + margin))
    return float(np.mean(hits))


def test_each_class_regions_map_points_at_its_own_object(segmenter):
    model, x, labels, boxes, target = segmenter
    with torch.no_grad():
        predicted = model(x).argmax(1)
    objects = target > 0
    pixel_accuracy = float((predicted[objects] == target[objects]).float().mean())
    trained, untrained = pointing(model, x, labels, boxes), pointing(small_segmenter(), x, labels, boxes)
    print(f"object pixels right {pixel_accuracy:.3f}; pointing trained {trained:.3f}, untrained {untrained:.3f}")
    assert pixel_accuracy >= 0.8
    assert trained >= 0.85 and trained >= untrained + 0.3, (trained, untrained)


@pytest.fixture(scope="module")
def detector():
    images, labels, boxes, _ = draw_shapes(1000 + HELD, size=64, seed=6, objects=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels, boxes = torch.from_numpy(labels), torch.from_numpy(boxes)
    model = fit_detector(SmallDetector(), x[HELD:], labels[HELD:], boxes[HELD:], epochs=8, lr=3e-3)
    return model, x[:HELD], labels[:HELD], boxes[:HELD]


def box_pointing(model, x, labels, boxes, method: str, margin: int = 2) -> tuple[float, float]:
    """(share of objects whose Box map at the last ReLU peaks in the object's box ± margin, share found):
    the Box is the object's true box and label; an object the detector missed is a miss."""
    cam = gradcam.create_method(method, model, "features.7")
    hits, found = [], []
    for i in range(len(x)):
        for box, label in zip(boxes[i].tolist(), labels[i].tolist()):
            try:
                out = cam(x[i:i + 1], targets=gradcam.Box(box, label))
            except gradcam.TargetError:  # no detection of that label overlaps the box
                hits.append(False), found.append(False)
                continue
            peak = int(out.maps[0].flatten().argmax())
            row, col = peak // 64, peak % 64
            found.append(True)
            hits.append(box[0] - margin <= col <= box[2] + margin and box[1] - margin <= row <= box[3] + margin)
    return float(np.mean(hits)), float(np.mean(found))


def test_each_detected_objects_map_points_at_that_object(detector):
    """LayerCAM's peak lies on the object for 97 % of 300 held-out objects in our run (97 % found;
    untrained: none found), Grad-CAM's for 54 %: the detector reads each object's score and box at its centre cell,
    so the gradient is there alone; Grad-CAM averages it into one weight per channel for the whole map, which
    lights every place with the class's features, while LayerCAM weighs each place by its own gradient."""
    model, x, labels, boxes = detector
    scores = {m: box_pointing(model, x, labels, boxes, m) for m in ("layercam", "gradcam")}
    untrained, _ = box_pointing(SmallDetector().eval(), x, labels, boxes, "layercam")
    print(f"detector: pointing (trained, found) {scores}, untrained {untrained:.3f}")
    trained, found = scores["layercam"]
    assert found >= 0.9
    assert trained >= 0.85 and trained >= untrained + 0.3, (trained, untrained)
    assert scores["gradcam"][0] < trained
    out = gradcam.GradCAM(model, "features.7")(x[:1], targets=gradcam.Detections(min_score=0.3))
    assert out.maps.shape[1] >= 2 and len(out.objects) == out.maps.shape[1]  # both objects of the image

"""Ultralytics YOLO (optional extra, AGPL: never a dependency): a detection model built from its config
with random weights, offline, gives torchvision's detector output, and each Box map is the formula's."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from mapcheck import assert_relative_close

import gradcam
from gradcam.models.yolo import YOLODetections, load_yolo


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))  # not the user's home
    if importlib.util.find_spec("ultralytics") is None:  # (not imported here: load_yolo must be the first)
        pytest.skip("the optional extra yolo is not installed")
    model, labels = load_yolo("yolov8n.yaml")  # random weights, no download
    model.min_score = 0.0
    for branch in model.model.model[-1].cv3:  # class logits near 0, not YOLO's prior of -9: gradients not tiny
        torch.nn.init.zeros_(branch[-1].bias)
    return model, labels


def test_yolo_outputs_read_as_detections_and_box_maps_are_the_formula(yolo):
    model, labels = yolo
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        found = model(x)[0]
    assert len(labels) == 80 and len(found["boxes"]) > 0
    assert (found["scores"][:-1] >= found["scores"][1:]).all()  # best first
    first = gradcam.detected_boxes([found], 0.0)[0]
    box = gradcam.Box([v + 1.5 for v in first.box], first.label)  # near it, off IoU's kinks
    layer = "model.model.15"
    out = gradcam.GradCAM(model, layer)(x, targets=box, normalize="none")

    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    detections = model(x)[0]
    handle.remove()
    from torchvision.ops import box_iou

    ious = box_iou(torch.tensor([box.box]), detections["boxes"])[0] * (detections["labels"] == box.label)
    best = int(ious.argmax())
    (grad,) = torch.autograd.grad(ious[best] + detections["scores"][best], store["a"])
    expected = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1)).detach()
    assert_relative_close(out.raw, expected, 1e-4)


def test_a_missing_weights_file_is_an_error_not_a_download(yolo, tmp_path):
    with pytest.raises(gradcam.ModelError, match="YOLO weights file not found.*never downloads"):
        load_yolo(str(tmp_path / "yolov8n.pt"))
    with pytest.raises(gradcam.TargetError, match="4 \\+ classes, anchors"):
        YOLODetections(torch.nn.Identity())(torch.zeros(1, 3, 8))


def test_loading_leaves_pillow_as_it_was(yolo):
    from gradcam import ImageError
    from gradcam.io.images import load_image

    with pytest.raises(ImageError, match="not a recognised image"):  # Pillow's own open, not Ultralytics' patch
        load_image(b"hello, not an image")


def test_load_model_names_an_ultralytics_model(yolo):
    bundle = gradcam.load_model("ultralytics/yolov8n.yaml")
    assert isinstance(bundle.module, YOLODetections) and len(bundle.labels) == 80
    assert bundle.preprocess.size % 32 == 0 and bundle.preprocess.mean == (0.0, 0.0, 0.0)  # images in [0, 1]

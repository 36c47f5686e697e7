"""torchvision detectors and segmenters by name: built offline (random weights), COCO / VOC labels, a
preprocessing the detector's own transform keeps as it is (no rescale, no padding, so maps line up), local
weights files (a pretrained file, another head), and one error when the pretrained weights are unreachable."""

from __future__ import annotations

import os
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from gradcam.errors import ModelError
from gradcam.models.bundle import Preprocess
from gradcam.models.sources import list_models, load_model

DETECTORS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
             "maskrcnn_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large")
SEGMENTERS = ("deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "fcn_resnet50", "lraspp_mobilenet_v3_large")
SEGMENTER = "deeplabv3_mobilenet_v3_large"  # the cheapest segmenter with an auxiliary head in its pretrained file


@pytest.fixture(scope="module")
def faster():
    return load_model("fasterrcnn_resnet50_fpn_v2", pretrained=False)


@pytest.fixture(scope="module")
def segmenter():
    return load_model(SEGMENTER, pretrained=False)


def _photo(width: int = 640, height: int = 480) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _assert_keeps_size(bundle) -> None:
    """The detector's transform only normalises a preprocessed image: same size, no padding, same pixels."""
    x = bundle.preprocess.batch([_photo()])
    t = bundle.module.transform
    images, _ = t(list(x))
    size = bundle.preprocess.size
    assert x.shape[-2:] == (size, size) and images.tensors.shape == x.shape
    assert images.image_sizes == [(size, size)]
    mean = torch.tensor(t.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(t.image_std).view(1, 3, 1, 1)
    torch.testing.assert_close(images.tensors, (x - mean) / std)


def test_detector_and_segmenter_names_are_listed():
    names = list_models()
    assert set(DETECTORS) <= set(names) and set(SEGMENTERS) <= set(names)
    assert "resnet50" in names and "r3d_18" in names and len(names) == len(set(names))


def test_detector_builds_offline_with_coco_labels_and_images_in_0_1(faster):
    assert isinstance(faster.module, torchvision.models.detection.FasterRCNN) and not faster.module.training
    categories = torchvision.models.detection.FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT.meta["categories"]
    assert faster.labels == list(categories) and len(faster.labels) == 91
    assert faster.labels[0] == "__background__" and faster.labels[1] == "person" and faster.labels[12] == "N/A"
    assert faster.preprocess == Preprocess(800, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
    assert faster.preprocess.size % 32 == 0
    assert faster.module.transform.min_size == (800,) and faster.module.transform.max_size >= 800
    x = faster.preprocess(_photo())
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_detector_transform_keeps_the_preprocessed_size(faster):
    _assert_keeps_size(faster)


@pytest.mark.parametrize("name, size, classes", [
    ("fasterrcnn_resnet50_fpn", 800, 91), ("retinanet_resnet50_fpn_v2", 800, 91), ("fcos_resnet50_fpn", 800, 91),
    ("maskrcnn_resnet50_fpn", 800, 91), ("ssd300_vgg16", 300, 91), ("ssdlite320_mobilenet_v3_large", 320, 91),
    ("keypointrcnn_resnet50_fpn", 800, 2),  # trains at min_size 640…800: takes 800 here
])
def test_every_detector_keeps_its_preprocessed_size(name, size, classes):
    bundle = load_model(name, pretrained=False)
    assert bundle.preprocess.size == size and bundle.preprocess.mean == (0.0, 0.0, 0.0)
    assert len(bundle.labels) == classes and not bundle.module.training
    _assert_keeps_size(bundle)


def test_segmenter_builds_offline_with_voc_labels_and_its_weights_preprocessing(segmenter):
    weights = torchvision.models.get_model_weights(SEGMENTER).DEFAULT
    t = weights.transforms()
    assert isinstance(segmenter.module, torchvision.models.segmentation.DeepLabV3) and not segmenter.module.training
    assert segmenter.module.aux_classifier is None
    assert segmenter.labels == list(weights.meta["categories"]) and len(segmenter.labels) == 21
    assert segmenter.labels[0] == "__background__"
    assert segmenter.preprocess == Preprocess(520, tuple(t.mean), tuple(t.std), "bilinear")
    assert segmenter.preprocess.mean != (0.0, 0.0, 0.0)
    with torch.no_grad():
        out = segmenter.module(torch.rand(1, 3, 64, 48))["out"]
    assert out.shape == (1, 21, 64, 48)  # the scores cover the input pixel for pixel


def test_pretrained_segmenter_file_with_its_auxiliary_head_loads_and_another_head_rebuilds(tmp_path):
    torch.manual_seed(0)
    pretrained = torchvision.models.get_model(SEGMENTER, weights=None, weights_backbone=None, num_classes=21,
                                              aux_loss=True)  # the layout of torchvision's pretrained file
    torch.save(pretrained.state_dict(), tmp_path / "voc.pth")
    bundle = load_model(SEGMENTER, weights=tmp_path / "voc.pth")
    assert bundle.module.aux_classifier is None and len(bundle.labels) == 21
    assert torch.equal(bundle.module.classifier[4].weight, pretrained.classifier[4].weight)
    five = torchvision.models.get_model(SEGMENTER, weights=None, weights_backbone=None, num_classes=5, aux_loss=False)
    torch.save(five.state_dict(), tmp_path / "five.pth")
    bundle = load_model(SEGMENTER, weights=tmp_path / "five.pth")
    assert bundle.module.classifier[4].out_channels == 5 and bundle.labels is None


def test_detector_file_from_a_frozen_batchnorm_model_with_another_head_rebuilds(tmp_path):
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the lightest R-CNN: box layer 4 × classes
    torch.manual_seed(0)
    three = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=3)
    state = {k: v for k, v in three.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "three.pth")
    bundle = load_model(name, weights=tmp_path / "three.pth")
    predictor = bundle.module.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 3 and predictor.bbox_pred.out_features == 12
    assert torch.equal(predictor.bbox_pred.weight, three.roi_heads.box_predictor.bbox_pred.weight)
    assert bundle.labels is None and bundle.preprocess.size == 320
    _assert_keeps_size(bundle)  # the rebuilt model keeps the exact-size transform


def test_a_file_that_does_not_fit_a_detector_names_it(tmp_path):
    torch.save({"backbone.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="other.pth.*fasterrcnn_mobilenet_v3_large_320_fpn") as info:
        load_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights=tmp_path / "other.pth")
    assert "\n" not in str(info.value)


def test_unreachable_pretrained_detector_is_one_quick_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached file
    url = torchvision.models.detection.FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url
    if (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).exists():
        pytest.skip("the pretrained weights are in the torch cache")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model("fasterrcnn_resnet50_fpn_v2")
    assert time.perf_counter() - start < 5  # fails before building the network
    text = str(info.value)
    assert "'fasterrcnn_resnet50_fpn_v2'" in text and "--weights" in text and "\n" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__

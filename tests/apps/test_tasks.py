"""Explanations for other tasks through the library and the command line: each map is the engine's map
of the task's target, brought to the photo's size; the pictures and files are written; bad input is a
one-line error and the other images go on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import task_nets
import torch
from PIL import Image
from torch import nn

import gradcam
from gradcam.apps.tasks import explain_task
from gradcam.cli import main
from gradcam.engine.targets import Binary, ClassRegion, Regression, Similarity
from gradcam.models.bundle import ModelBundle, Preprocess

PHOTO = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8))
PRE = Preprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

@pytest.fixture(scope="module")
def nets():
    return Path(task_nets.__file__), task_nets


def bundle(module: nn.Module, labels=None) -> ModelBundle:
    return ModelBundle(module=module.eval(), preprocess=PRE, labels=labels, name=type(module).__name__)


def engine_heatmap(model, target, layer="features"):
    """The engine's map of ``target`` on the preprocessed photo, brought to the photo's size."""
    cam = gradcam.GradCAM(model, layer)
    out = cam(PRE.batch([PHOTO]), targets=target, normalize="none")
    return cam.finish(list(out.raws), (30, 40), "minmax")[0].numpy()


def test_segmentation_explains_the_largest_class_but_background_with_its_outline(nets):
    _, m = nets
    model = m.Segmenter()
    result = explain_task(PHOTO, model=bundle(model, ["background", "cat", "dog"]), task="segmentation",
                          layer="features")
    with torch.no_grad():
        predicted = model(PRE.batch([PHOTO]))["out"].argmax(1)
    counts = torch.bincount(predicted.flatten(), minlength=3)
    expected_class = int(counts[1:].argmax()) + 1
    assert result.captions[0].startswith(["background", "cat", "dog"][expected_class])
    assert np.allclose(result.heatmaps[0], engine_heatmap(model, ClassRegion(expected_class)), atol=1e-5)
    nearest = nn.functional.interpolate((predicted == expected_class)[:, None].float(), size=(30, 40), mode="nearest")
    assert np.array_equal(result.masks[0], nearest[0, 0].bool().numpy())
    picture = np.asarray(result.pictures()["overlay"])
    edge = result.masks[0] & ~np.roll(result.masks[0], 1, axis=1)  # left edges lie on the outline
    edge[:, 0] = False  # (not the image's own border)
    assert edge.any()
    assert (picture[edge] == 255).all()
    dog = explain_task(PHOTO, model=bundle(model, ["background", "cat", "dog"]), task="segmentation",
                       layer="features", classes="dog")
    assert np.allclose(dog.heatmaps[0], engine_heatmap(model, ClassRegion(2)), atol=1e-5)


def test_detection_one_map_and_one_box_per_object_in_the_photos_pixels(nets, tmp_path):
    _, m = nets
    model = m.DETR()
    result = explain_task(PHOTO, model=bundle(model, ["a", "b", "c"]), task="detection", layer="features",
                          min_score=0.0)
    with torch.no_grad():
        output = model(PRE.batch([PHOTO]))
    targets = gradcam.detected_boxes(output, 0.0, input_size=(16, 16))
    assert result.heatmaps.shape == (len(targets), 30, 40) and len(result.boxes) == len(targets)
    for k, box in enumerate(targets):
        assert np.allclose(result.boxes[k], [box.box[0] * 40 / 16, box.box[1] * 30 / 16,
                                             box.box[2] * 40 / 16, box.box[3] * 30 / 16])
        assert np.allclose(result.heatmaps[k], engine_heatmap(model, box), atol=1e-4)
        assert result.captions[k].startswith("abc"[box.label] + " ")
    written = result.save(tmp_path, "photo.png")
    assert set(written) == {"objects", "panels", "maps"} and all(p.is_file() for p in written.values())
    assert Image.open(written["objects"]).size == (40, 30)
    one = explain_task(PHOTO, model=bundle(model, ["a", "b", "c"]), task="detection", layer="features",
                       box=result.boxes[1])  # the object at this box, whatever its label
    assert np.allclose(one.heatmaps[0], result.heatmaps[1], atol=1e-4)


def test_binary_multilabel_regression_and_embedding(nets):
    _, m = nets
    one = m.Binary()
    with torch.no_grad():
        logit = float(one(PRE.batch([PHOTO]))[0, 0])
    result = explain_task(PHOTO, model=bundle(one), task="binary", layer="features")
    assert result.captions[0].startswith("positive" if logit > 0 else "negative")
    assert np.allclose(result.heatmaps[0], engine_heatmap(one, Binary(logit > 0)), atol=1e-5)
    other = explain_task(PHOTO, model=bundle(one), task="binary", layer="features", classes=int(logit <= 0))
    assert np.allclose(other.heatmaps[0], engine_heatmap(one, Binary(logit <= 0)), atol=1e-5)

    head = m.Head()
    with torch.no_grad():
        head.fc.bias.copy_(torch.tensor([4.0, -4.0, 5.0, -5.0]))
    labels = ["sun", "rain", "snow", "fog"]
    several = explain_task(PHOTO, model=bundle(head, labels), task="multilabel", layer="features")
    assert [c.split(" ")[0] for c in several.captions] == ["snow", "sun"]
    assert several.heatmaps.shape == (2, 30, 40) and "panels" in several.pictures()
    assert np.allclose(several.heatmaps[1], engine_heatmap(head, 0), atol=1e-5)
    assert explain_task(PHOTO, model=bundle(head, labels), task="multilabel", layer="features",
                        classes=["fog"]).captions[0].startswith("fog")

    down = explain_task(PHOTO, model=bundle(head), task="regression", layer="features", classes=2, negative=True)
    assert np.allclose(down.heatmaps[0], engine_heatmap(head, Regression(2, negative=True)), atol=1e-5)

    reference = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8))
    with torch.no_grad():
        embedding = head(PRE.batch([reference]))[0]
    match = explain_task(PHOTO, model=bundle(head), task="embedding", layer="features", reference=reference)
    assert np.allclose(match.heatmaps[0], engine_heatmap(head, Similarity(embedding)), atol=1e-5)
    with pytest.raises(gradcam.OptionError, match="--reference"):
        explain_task(PHOTO, model=bundle(head), task="embedding", layer="features")


def test_the_command_line_runs_every_task_and_goes_on_after_a_bad_image(nets, tmp_path, capsys):
    path, _ = nets
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    PHOTO.save(photos / "a" / "x.png")
    PHOTO.save(photos / "b" / "x.png")  # the same file name in two folders: two sets of pictures
    (photos / "b" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    status = main(["explain", str(photos), "--model", f"{path}:Segmenter", "--task", "segmentation",
                   "--class", "1", "--layer", "features", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert status == 1 and "broken.png" in err and err.count("\n") == 1
    assert (out / "a" / "x.png.gradcam.segmentation-overlay.png").is_file()
    assert (out / "b" / "x.png.gradcam.segmentation-overlay.png").is_file()
    assert printed.count("segmentation, layer features") == 2
    status = main(["explain", str(photos / "a" / "x.png"), "--model", f"{path}:DETR", "--task", "detection",
                   "--min-score", "0", "--layer", "features", "--out", str(out)])
    assert status == 0 and (out / "x.png.gradcam.detection-panels.png").is_file()
    capsys.readouterr()
    assert main(["explain", str(photos / "a" / "x.png"), "--box", "0,0,5,5"]) == 2
    assert "--box needs --task" in capsys.readouterr().err
    assert main(["explain", str(photos / "a" / "x.png"), "--task", "detection", "--box", "5,0,1,5"]) == 2
    assert "box must be x0,y0,x1,y1" in capsys.readouterr().err


def test_a_torchvision_detector_by_name_is_explained_on_every_pyramid_level():
    from gradcam.apps.tasks import detector_layers

    bundle = gradcam.load_model("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False)
    bundle.module.roi_heads.score_thresh, bundle.module.roi_heads.detections_per_img = 0.0, 3  # random weights
    assert detector_layers(bundle.module) == ["backbone.fpn.layer_blocks.0", "backbone.fpn.layer_blocks.1"]
    result = explain_task(PHOTO, model=bundle, task="detection", min_score=0.0)
    assert result.layer == "backbone.fpn.layer_blocks.0,backbone.fpn.layer_blocks.1"
    assert result.heatmaps.shape == (3, 30, 40) and len(result.boxes) == 3
    assert all(c.rsplit(" ", 1)[0] in bundle.labels for c in result.captions)  # COCO names

"""Named targets for other tasks against their formulas, and segmentation against pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import task_nets
import torch
from mapcheck import assert_minmax_close, assert_relative_close, minmax
from torch import nn

import gradcam
from gradcam import Binary, ClassRegion, Regression, Similarity

Head = task_nets.Head  # a conv feature map, pooled, then a linear head with ``outputs`` outputs


def direct(model, layer, x, score):
    """ReLU(Σ_k mean(∂s/∂A^k) A^k) for scores s = score(output) (B,), by a plain backward."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    output = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(score(output).sum(), store["a"])
    return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1)).detach()


X = torch.randn(3, 3, 10, 10, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("positive", [True, False])
def test_binary_maps_explain_plus_or_minus_the_logit_whatever_its_sign(positive):
    model = Head(1).eval()
    with torch.no_grad():
        model.fc.bias -= model(X)[:, 0].median()  # so that the batch holds both signs
        logits = model(X)[:, 0]
    assert (logits > 0).any() and (logits < 0).any()  # both signs are in the batch
    out = gradcam.GradCAM(model, "features")(X, targets=Binary(positive), normalize="none")
    sign = 1.0 if positive else -1.0
    expected = direct(model, model.features, X, lambda o: sign * o[:, 0])
    assert_relative_close(out.raw, expected, 1e-5)
    other = gradcam.GradCAM(model, "features")(X, targets=Binary(not positive), normalize="none")
    assert not torch.allclose(out.raw, other.raw)  # the two classes' maps differ


def test_regression_and_its_negative():
    model = Head(2).eval()
    for target, score in ((Regression(1), lambda o: o[:, 1]), (Regression(1, negative=True), lambda o: -o[:, 1])):
        out = gradcam.GradCAM(model, "features")(X, targets=target, normalize="none")
        assert_relative_close(out.raw, direct(model, model.features, X, score), 1e-5)
    with pytest.raises(gradcam.TargetError, match="index 2 for a model with 2 outputs"):
        gradcam.GradCAM(model, "features")(X, targets=Regression(2))


def test_similarity_to_a_reference_embedding():
    model = Head(5).eval()
    reference = torch.randn(5, generator=torch.Generator().manual_seed(2))
    out = gradcam.GradCAM(model, "features")(X, targets=Similarity(reference), normalize="none")
    expected = direct(model, model.features, X,
                      lambda o: nn.functional.cosine_similarity(o, reference[None].expand_as(o), dim=1))
    assert_relative_close(out.raw, expected, 1e-5)
    with pytest.raises(gradcam.TargetError, match="reference of shape"):
        gradcam.GradCAM(model, "features")(X, targets=Similarity(torch.randn(4)))


class Segmenter(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, classes, 1)

    def forward(self, x):
        return {"out": self.classifier(self.features(x))}


def test_class_region_sums_the_class_over_its_predicted_pixels():
    model = Segmenter(3).eval()
    with torch.no_grad():
        predicted = model(X)["out"].argmax(1)
    out = gradcam.GradCAM(model, "features")(X, targets=ClassRegion(2), normalize="none")
    expected = direct(model, model.features, X, lambda o: (o["out"][:, 2] * (predicted == 2)).sum(dim=(1, 2)))
    assert_relative_close(out.raw, expected, 1e-5)
    mask = torch.zeros(10, 10)
    mask[2:5, 3:7] = 1
    given = gradcam.GradCAM(model, "features")(X, targets=ClassRegion(0, mask), normalize="none")
    assert_relative_close(given.raw, direct(model, model.features, X, lambda o: (o["out"][:, 0] * mask).sum((1, 2))),
                          1e-5)


def test_binary_segmentation_with_one_sigmoid_channel():
    model = Segmenter(1).eval()
    with torch.no_grad():
        logit = model(X)["out"][:, 0]
    assert (logit > 0).any() and (logit <= 0).any()
    for cls, score in ((1, lambda o: (o["out"][:, 0] * (logit > 0)).sum((1, 2))),
                       (0, lambda o: (-o["out"][:, 0] * (logit <= 0)).sum((1, 2)))):
        out = gradcam.GradCAM(model, "features")(X, targets=ClassRegion(cls), normalize="none")
        assert_relative_close(out.raw, direct(model, model.features, X, score), 1e-5)


def test_score_cam_keeps_the_clean_inputs_mask_and_augment_is_refused():
    """The masked copies are scored over the pixels the clean input predicted: the same maps as that mask given."""
    model = Segmenter(3).eval()
    with torch.no_grad():
        predicted = model(X[:1])["out"].argmax(1)
    cam = gradcam.create_method("scorecam", model, "features")
    bound = cam(X[:1], targets=ClassRegion(1), normalize="none")
    given = cam(X[:1], targets=ClassRegion(1, predicted == 1), normalize="none")
    assert torch.allclose(bound.raw, given.raw)
    with pytest.raises(gradcam.OptionError, match="augment=True flips the input"):
        gradcam.GradCAM(model, "features", augment=True)(X, targets=ClassRegion(1))


@pytest.mark.parametrize("name, layer", [("fcn_resnet50", "backbone.layer4"),
                                         ("deeplabv3_mobilenet_v3_large", "backbone.16")])
def test_class_region_equals_pytorch_grad_cams_segmentation_target(name, layer):
    pgc = pytest.importorskip("pytorch_grad_cam")
    import torchvision
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=5,
                                         aux_loss=False).eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scores = model(x)["out"]
    cls = int(scores.argmax(1).flatten().mode().values)  # the class with the most pixels
    mask = (scores.argmax(1)[0] == cls).float().numpy()
    ours = gradcam.GradCAM(model, layer)(x, targets=ClassRegion(cls), normalize="none")

    class Out(nn.Module):  # pytorch-grad-cam's tutorial wrapper: the "out" tensor of the dict
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)["out"]

    wrapped = Out(model)
    with pgc.GradCAM(model=wrapped, target_layers=[wrapped.model.get_submodule(layer)]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, mask)]))
    assert mask.sum() > 0
    assert_minmax_close(ours.maps, ref, 2e-3)


@pytest.fixture(scope="module")
def detector():
    """A seeded Faster R-CNN that finds boxes with random weights (score threshold 0), at 128 px."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=5, min_size=128, max_size=128, box_score_thresh=0.0).eval()


def test_box_maps_equal_pytorch_grad_cams_box_score_target_and_differ_per_object(detector):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    from gradcam import Box, detected_boxes

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        output = detector(x)
    boxes = detected_boxes(output, min_score=0.0)
    first = boxes[0]
    second = next(b for b in boxes[1:] if torch.ops.torchvision.nms(
        torch.tensor([first.box, b.box]), torch.tensor([1.0, 0.5]), 0.3).numel() == 2)  # another object
    layer = "backbone.body.layer3"
    cam = gradcam.GradCAM(detector, layer)
    maps = [cam(x, targets=b, normalize="none") for b in (first, second)]
    with pgc.GradCAM(model=detector, target_layers=[detector.get_submodule(layer)]) as ref_cam:
        ref = torch.from_numpy(ref_cam(input_tensor=x, targets=[FasterRCNNBoxScoreTarget(
            labels=[first.label], bounding_boxes=[np.array(first.box)])]))
    assert_minmax_close(maps[0].maps, ref, 2e-3)
    assert (minmax(maps[0].maps) - minmax(maps[1].maps)).abs().max() > 0.05  # one map per object (rounding: ~1e-6)
    with pytest.raises(gradcam.TargetError, match="no detection of label"):
        cam(x, targets=Box([0, 0, 2, 2], first.label))


def test_detections_give_one_map_per_object_each_equal_to_its_box(detector):
    from gradcam import Detections, detected_boxes

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        output = detector(x)
    scores = output[0]["scores"]
    best = scores.unique().sort(descending=True).values
    threshold = float(best[2] + best[3]) / 2  # the objects of the three best scores
    cam = gradcam.GradCAM(detector, "backbone.body.layer3")
    out = cam(x, targets=Detections(min_score=threshold), normalize="none")
    boxes = detected_boxes(output, min_score=threshold)
    assert len(boxes) >= 3 and out.maps.shape == (1, len(boxes), 128, 128) and len(out.objects) == len(boxes)
    assert out.targets.tolist() == [[b.label for b in boxes]]
    for k, box in enumerate(boxes):  # each map is its box's own call
        assert out.objects[k].box == box.box
        assert_relative_close(out.raw[:, k], cam(x, targets=box, normalize="none").raw, 1e-4)
    with pytest.raises(gradcam.TargetError, match="no object with a score >= 2"):
        cam(x, targets=Detections(min_score=2.0))
    with pytest.raises(gradcam.TargetError, match="one image per call"):
        cam(x.repeat(2, 1, 1, 1), targets=Detections())


def test_box_reads_detr_outputs_in_the_inputs_pixels():
    from gradcam import Box

    model = task_nets.DETR().eval()
    x = X[:1]
    with torch.no_grad():
        output = model(x)
    probs = output["pred_logits"].softmax(-1)[0, :, :-1]
    score, label = probs.max(-1)
    q = int(score.argmax())
    cx, cy, w, h = (output["pred_boxes"][0, q] * 10).tolist()  # the input is 10 × 10
    box = [cx - w / 2 + 0.2, cy - h / 2 - 0.1, cx + w / 2 + 0.1, cy + h / 2 + 0.2]  # near it, off IoU's kinks
    out = gradcam.GradCAM(model, "features")(x, targets=Box(box, int(label[q])), normalize="none")

    def corners(o):  # every query's box in the input's pixels
        b = o["pred_boxes"][0] * 10
        return torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                            b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)

    from torchvision.ops import box_iou
    ious = box_iou(torch.tensor([box]), corners(output))[0] * (label == label[q])
    match = int(ious.argmax())  # the query of that label that overlaps the box best
    assert ious[match] > 0.5

    def score_fn(o):  # IoU of the matched query's box with the given box + its class probability
        iou = box_iou(torch.tensor([box]), corners(o)[match:match + 1])[0, 0]
        return (iou + o["pred_logits"][0, match].softmax(-1)[int(label[q])])[None]

    assert_relative_close(out.raw, direct(model, model.features, x, score_fn), 1e-4)


def test_multilabel_gives_one_map_per_present_label_or_per_named_label():
    model = Head(4).eval()
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([5.0, -5.0, 4.0, -6.0]))  # labels 0 and 2 present, 0 first
        logits = model(X)
    assert ((logits[:, 0] > logits[:, 2]) & (logits[:, 2] > 0) & (logits[:, [1, 3]] < 0).all(1)).all()
    cam = gradcam.GradCAM(model, "features", labels=["cat", "dog", "sky", "sea"])
    out = cam(X, targets=gradcam.MultiLabel(), normalize="none")
    assert out.targets.tolist() == [[0, 2]] * 3 and out.maps.shape == (3, 2, 10, 10)
    for k, label in enumerate((0, 2)):
        assert_relative_close(out.raw[:, k], direct(model, model.features, X, lambda o: o[:, label]), 1e-5)
    named = cam(X, targets=gradcam.MultiLabel(["sea", 1]), normalize="none")
    assert named.targets.tolist() == [[3, 1]] * 3
    assert_relative_close(named.raw[:, 0], direct(model, model.features, X, lambda o: o[:, 3]), 1e-5)
    with pytest.raises(gradcam.TargetError, match="no label with p >= 0.999"):
        cam(X, targets=gradcam.MultiLabel(threshold=0.999))
    with pytest.raises(gradcam.TargetError, match="unknown class name 'cow'"):
        cam(X, targets=gradcam.MultiLabel(["cow"]))


@pytest.mark.parametrize("model, layer", [(task_nets.DETR, "features"),
                                          (lambda: __import__("gradcam.apps.synthetic.small_nets",
                                                              fromlist=["x"]).SmallDetector(),
                                           "features.7")])
def test_ablation_cam_scores_each_ablated_copy_of_a_detector_as_that_copy(model, layer):
    """Ablation-CAM's formula, w_k = (y − y_k) / y with y_k the Box score of the image with channel k of
    the layer zeroed (0 where that copy lost the object), computed one channel at a time: equal for a
    DETR-style dict (traced) and for a detector's list of per-image dicts (each copy is its own image,
    not the first one's)."""
    from gradcam import Box, detected_boxes

    net = model().eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        first = detected_boxes(net(x), 0.0, input_size=(32, 32))[0]
    box = Box([v + 0.5 for v in first.box], first.label, input_size=(32, 32))
    out = gradcam.create_method("ablationcam", net, layer)(x, targets=box, normalize="none")
    store, zero = {}, {}

    def hook(module, inputs, output):
        store["a"] = output.detach()
        if "k" in zero:
            output = output.clone()
            output[:, zero["k"]] = 0
            return output

    handle = net.get_submodule(layer).register_forward_hook(hook)
    with torch.no_grad():
        output = net(x)
        activations = store["a"]
        bound = box.bind(output)  # a copy that lost the object scores 0
        y = bound(output)
        weights = []
        for k in range(activations.shape[1]):
            zero["k"] = k
            weights.append((y - bound(net(x))) / y)
    handle.remove()
    expected = torch.relu((torch.stack(weights, 1)[..., None, None] * activations).sum(1))
    assert_relative_close(out.raw, expected, 1e-4)

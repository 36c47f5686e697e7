"""Object detection: a detector's output read as boxes, labels and scores (torchvision, DETR, Hugging
Face), one object's target (a box) and every object at once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from gradcam.engine.targets.sets import TargetSet
from gradcam.engine.targets.tasks import TaskTarget
from gradcam.errors import TargetError


def detections(output: Any, input_size: Sequence[int] | None = None) -> list[dict]:
    """A detector's output as one dict of "boxes" (N, 4) x0, y0, x1, y1 in input pixels, "labels" (N,) and
    "scores" (N,) per image, the scores and boxes still carrying their gradient. Reads torchvision's
    detectors (that list already) and DETR-style outputs: a dict of "pred_logits" (B, Q, K + 1, the last
    class "no object") and "pred_boxes" (B, Q, 4, centre x, centre y, width, height relative to the
    image), or an object with ``.logits`` and ``.pred_boxes`` (Hugging Face), which need ``input_size``."""
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) and "boxes" in o for o in output):
        return list(output)
    logits = boxes = None
    if isinstance(output, dict) and "pred_logits" in output and "pred_boxes" in output:
        logits, boxes = output["pred_logits"], output["pred_boxes"]
    elif hasattr(output, "pred_boxes") and hasattr(output, "logits"):
        logits, boxes = output.logits, output.pred_boxes
    if logits is None:
        raise TargetError("a detection target needs a detector's output: one dict of boxes, labels and scores "
                          "per image (torchvision), or DETR's pred_logits and pred_boxes; got "
                          f"{type(output).__name__}")
    if input_size is None:
        raise TargetError("DETR-style boxes are relative to the image: the detection target needs the input size")
    height, width = input_size[-2:]
    scores, labels = logits.softmax(dim=-1)[..., :-1].max(dim=-1)
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    corners = corners * corners.new_tensor([width, height, width, height])
    return [{"boxes": b, "labels": label, "scores": s} for b, label, s in zip(corners, labels, scores)]


def is_detection(output: Any) -> bool:
    """Whether a model's output is one a detection target reads (see :func:`detections`)."""
    try:
        detections(output, (1, 1))
    except TargetError:
        return False
    return True


@dataclass(frozen=True)
class Box(TaskTarget):
    """Object detection, one map per object: the detection that best overlaps ``box`` [x0, y0, x1, y1]
    (in the input's pixels) and has ``label`` scores IoU + its class score, as pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` does (the IoU carries the box regression's gradient, the score the
    classifier's). Reads any output :func:`detections` reads. An image with no detection of that label at
    IoU > ``iou`` is an error, never an empty map."""

    box: Any
    label: int
    iou: float = 0.5
    input_size: Any = None  # set by bind(): DETR's relative boxes are scaled to it
    strict: bool = True  # bind() checks the explained image and turns it off for its perturbed copies

    def bind(self, output: Any, input_size: Sequence[int] | None = None) -> "Box":
        """The explained image must hold the object (else a TargetError); a masked or ablated copy of it
        that lost the detection scores 0, as the object's score has dropped to nothing there."""
        bound = self if input_size is None else replace(self, input_size=tuple(input_size))
        bound(output)
        return replace(bound, strict=False)

    def __call__(self, output: Any) -> torch.Tensor:
        from torchvision.ops import box_iou  # here: the engine needs torchvision only for detection

        scores = []
        for index, found in enumerate(detections(output, self.input_size)):
            boxes = found["boxes"]
            box = torch.as_tensor(self.box, device=boxes.device, dtype=boxes.dtype).reshape(1, 4)
            ious = box_iou(box, boxes)[0] if len(boxes) else boxes.new_zeros(0)
            ious = torch.where(found["labels"] == self.label, ious, torch.zeros_like(ious))
            best = int(ious.detach().argmax()) if len(ious) else -1
            if best < 0 or float(ious[best].detach()) <= self.iou:
                if not self.strict:
                    scores.append(found["scores"].sum() * 0 if len(boxes) else boxes.new_zeros(()))
                    continue
                raise TargetError(f"Box: image {index} has no detection of label {self.label} overlapping "
                                  f"{[round(float(v), 1) for v in box[0]]} with IoU > {self.iou}")
            scores.append(ious[best] + found["scores"][best])
        return torch.stack(scores)


def detected_boxes(output: Any, min_score: float = 0.5, image: int = 0,
                   input_size: Sequence[int] | None = None) -> list[Box]:
    """One :class:`Box` target per object a detector found in image ``image`` with a score ≥ ``min_score``,
    best first: explain each with its own call, or all at once with :class:`Detections`."""
    found = detections(output, input_size)[image]
    scores = found["scores"].detach()
    order = [i for i in scores.argsort(descending=True).tolist() if scores[i] >= min_score]
    boxes, labels = found["boxes"].detach(), found["labels"].detach()
    return [Box(boxes[i].tolist(), int(labels[i]), input_size=None if input_size is None else tuple(input_size))
            for i in order]


@dataclass(frozen=True)
class Detections(TargetSet):
    """Object detection, every object at once: one map per detection with a score ≥ ``min_score`` (best
    first), each the map of its :class:`Box`. ``out.targets`` holds the objects' labels and ``out.objects``
    their boxes. One image per call: each image has its own objects."""

    min_score: float = 0.5
    iou: float = 0.5
    spatial = True

    def expand(self, output, input_size, labels):
        found = detections(output, input_size)
        if len(found) != 1:
            raise TargetError(f"Detections explains the objects of one image per call, got a batch of {len(found)}")
        boxes = [replace(b, iou=self.iou) for b in detected_boxes(output, self.min_score, 0, input_size)]
        if not boxes:
            best = float(found[0]["scores"].detach().max()) if len(found[0]["scores"]) else float("nan")
            raise TargetError(f"Detections: no object with a score >= {self.min_score} (the best scores {best:.3g}); "
                              "lower min_score")
        return torch.tensor([[b.label for b in boxes]]), boxes

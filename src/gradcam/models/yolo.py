"""Ultralytics YOLO detectors (the optional extra ``yolo``; Ultralytics is AGPL-3.0, so never a dependency of
the package), with torchvision's detector output, so that :class:`~gradcam.engine.targets.Box` and
``Detections`` explain one map per object as they do for Faster R-CNN."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import batched_nms

from gradcam.errors import ModelError, TargetError


class YOLODetections(nn.Module):
    """An Ultralytics detection model (YOLOv8 and later, whose eval output is one (B, 4 + K, anchors) tensor
    of box centre x, centre y, width, height in input pixels and the K class probabilities) returning, per
    image, a dict of "boxes" (x0, y0, x1, y1), "labels" and "scores": the anchors whose best class scores
    ≥ ``min_score``, after class-wise non-maximum suppression at IoU ``iou``, best first, at most
    ``max_detections``. Scores and boxes keep their gradient (only the choice of anchors is detached)."""

    def __init__(self, model: nn.Module, min_score: float = 0.25, iou: float = 0.7, max_detections: int = 100):
        super().__init__()
        self.model, self.min_score, self.iou, self.max_detections = model, min_score, iou, max_detections

    def forward(self, x: torch.Tensor) -> list[dict]:
        raw = self.model(x)
        prediction = raw[0] if isinstance(raw, (tuple, list)) else raw
        if not isinstance(prediction, torch.Tensor) or prediction.dim() != 3 or prediction.shape[1] < 5:
            shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
            raise TargetError(f"a YOLO model's output should be (B, 4 + classes, anchors), got {shape}")
        found = []
        for anchors in prediction.transpose(1, 2):  # (anchors, 4 + K) per image
            scores, labels = anchors[:, 4:].max(dim=1)
            cx, cy, w, h = anchors[:, :4].unbind(1)
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
            keep = (scores.detach() >= self.min_score).nonzero()[:, 0]
            kept = batched_nms(boxes.detach()[keep].float(), scores.detach()[keep].float(), labels[keep], self.iou)
            keep = keep[kept[:self.max_detections]]
            found.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return found


def load_yolo(source: str) -> tuple[YOLODetections, list[str]]:
    """(model, class names) of an Ultralytics model: a local ``.pt`` checkpoint, or a ``.yaml`` config
    (random weights, e.g. "yolov8n.yaml"). Never downloads: a missing file is a ModelError."""
    import sys

    from PIL import Image

    ours, pillow_open = "ultralytics" not in sys.modules, Image.open
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ModelError("YOLO models need Ultralytics (AGPL-3.0): pip install 'gradcam[yolo]'") from None
    finally:  # importing Ultralytics replaces PIL.Image.open process-wide (a HEIF fallback that may pip-install):
        if ours:  # when gradcam is the one importing it, Pillow stays as the user had it
            Image.open = pillow_open
    from pathlib import Path

    if not source.endswith((".yaml", ".yml")) and not Path(source).is_file():
        raise ModelError(f"YOLO weights file not found: {source} (gradcam never downloads them; give a local .pt)")
    try:
        model = YOLO(source, task="detect").model
    except Exception as e:  # Ultralytics raises many kinds of errors for a bad file
        raise ModelError(f"could not load the YOLO model {source}: {str(e).splitlines()[0][:200]}") from None
    names = model.names
    labels = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return YOLODetections(model.float().eval()), labels

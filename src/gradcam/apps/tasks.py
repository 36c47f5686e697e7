"""Explanations for tasks other than one softmax over classes: segmentation (a class over its region),
detection (one map per object), embeddings (similarity to a reference image), binary (one sigmoid),
multi-label and regression. Each holds the photo, one map per explained thing at the photo's size, and
saves the pictures people look at: boxes and per-object panels, the class mask's outline, one overlay
per label; and the maps as ``.npy``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from gradcam.apps.model_cache import bundle_on_device
from gradcam.apps.result import Explained
from gradcam.choices import TASKS
from gradcam.engine.capture import eval_mode
from gradcam.engine.methods import create_method
from gradcam.engine.targets import (
    Binary,
    Box,
    ClassRegion,
    Detections,
    MultiLabel,
    Regression,
    Similarity,
    class_index,
    detections,
    extract_logits,
    segmentation_scores,
)
from gradcam.errors import OptionError, TargetError
from gradcam.io.images import load_image
from gradcam.render import objects as object_pictures
from gradcam.render.files import picture_name, save_array, save_picture, source_name
from gradcam.render.pictures import overlay, wrapped_grid

_BACKGROUND = ("__background__", "background")


@dataclass
class TaskExplanation(Explained):
    """One photo's explanation for a task: ``heatmaps`` (k, H, W) at the photo's size, one per explained
    thing (an object, a label, the class region), each with its caption; ``boxes`` (detection) in the
    photo's pixels; ``masks`` (segmentation) (k, H, W) bool."""

    task: str
    image: Image.Image
    heatmaps: np.ndarray
    captions: list[str]
    boxes: list[list[float]] | None = None
    masks: np.ndarray | None = None

    def pictures(self) -> dict[str, Image.Image]:
        """The pictures, by kind: detection "objects" (every map inside its box) and "panels" (one per
        object); segmentation "overlay" with the mask's outline; else one "overlay" per map and, for
        several, "panels"."""
        style = {"colormap": self.colormap, "alpha": self.alpha}
        if self.task == "detection":
            return {"objects": object_pictures.objects_overlay(self.image, self.heatmaps, self.boxes, self.captions,
                                                               **style),
                    "panels": object_pictures.object_panels(self.image, self.heatmaps, self.boxes, self.captions,
                                                            title=self._title(), **style)}
        overlays = self.overlays()
        if len(overlays) == 1:
            return {"overlay": overlays[0]}
        found = {f"overlay{k + 1}": o for k, o in enumerate(overlays)}
        found["panels"] = wrapped_grid(overlays, self.captions, columns=min(4, len(overlays)), title=self._title())
        return found

    def overlays(self, colormap: str | None = None, alpha: float | None = None) -> list[Image.Image]:
        """One overlay per map (with the class mask's outline for segmentation)."""
        overlays = [overlay(self.image, heatmap, colormap=colormap or self.colormap,
                            alpha=self.alpha if alpha is None else alpha) for heatmap in self.heatmaps]
        if self.masks is not None:
            overlays = [object_pictures.mask_outline(o, m) for o, m in zip(overlays, self.masks)]
        return overlays

    def save(self, directory: str | os.PathLike, name: str | None = None, format: str = "png") -> dict[str, Path]:
        """Write the pictures (``<name>.<method>.<task>-<kind>.png``) and the maps (``….maps.npy``, (k, H, W));
        returns {kind: path}."""
        root = Path(directory)
        stem = name or self.name
        written = {kind: save_picture(picture, root / picture_name(stem, self.method, f"{self.task}-{kind}",
                                                                    suffix=f".{format}"))
                   for kind, picture in self.pictures().items()}
        written["maps"] = save_array(self.heatmaps, root / picture_name(stem, self.method, "maps", suffix=".npy"))
        return written

    def _title(self) -> str:
        return f"{self.model} · {self.method} · {self.task} · layer {self.layer}"


def explain_task(
    image: Any,
    *,
    model: Any,
    task: str,
    method: str = "gradcam",
    layer: Any = None,
    classes: Sequence[int | str] | int | str | None = None,
    box: Sequence[float] | None = None,
    min_score: float | None = None,
    reference: Any = None,
    negative: bool = False,
    weights: Any = None,
    device: Any = None,
    colormap: str = "jet",
    alpha: float = 0.5,
    name: str | None = None,
    **method_options: Any,
) -> TaskExplanation:
    """One photo explained for ``task`` (one of :data:`TASKS`):

    - segmentation: ``classes`` one class (index or name; default the class covering most pixels,
      background aside), scored over its predicted pixels (:class:`ClassRegion`);
    - detection: every object with a score ≥ ``min_score`` (default 0.5), one map each
      (:class:`Detections`); or the object best overlapping ``box`` [x0, y0, x1, y1] in the photo's pixels
      (of label ``classes`` if given);
    - embedding: the cosine similarity of the photo's embedding to the ``reference`` photo's;
    - binary: the predicted side of a one-logit head, or ``classes`` 1 (positive) / 0 (negative);
    - multilabel: every label with p ≥ ``min_score`` (default 0.5), or the ``classes`` named;
    - regression: output ``classes`` (default 0); ``negative`` explains what drives it down.
    """
    if task not in TASKS:
        raise OptionError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    bundle, device = bundle_on_device(model, weights, device)
    if layer is None and task == "detection":
        layer = detector_layers(bundle.module)
    photo = image if isinstance(image, Image.Image) else load_image(image)
    x = bundle.preprocess.batch([photo]).to(device)
    size = tuple(x.shape[2:])
    cam = create_method(method, bundle.module, layer, labels=bundle.labels, **method_options)
    if cam.output_kind != "heatmap":
        raise OptionError(f"{method} gives input-space pictures, not heatmaps; use a CAM method for {task}")
    with torch.no_grad(), eval_mode(bundle.module):
        clean = bundle.module(x)
    target, captions = _target(task, clean, bundle, photo, x, classes, box, min_score, reference, negative)
    out = cam(x, targets=target, normalize="none")
    raws = [raw if raw.dim() == 4 else raw[:, None] for raw in out.raws]  # (1, k, h, w) per layer
    count = raws[0].shape[1]
    heatmaps = np.stack([cam.finish([r[:, k] for r in raws], (photo.height, photo.width), "minmax")[0].cpu().numpy()
                         for k in range(count)]).astype(np.float32)
    scale = (photo.width / size[1], photo.height / size[0])
    found = TaskExplanation(task=task, image=photo, heatmaps=heatmaps, captions=captions, layer=",".join(out.layers),
                            method=method, model=bundle.name, name=name or source_name(image), colormap=colormap,
                            alpha=alpha)
    if task == "detection":
        objects = out.objects or [target]
        found.boxes = [[b.box[0] * scale[0], b.box[1] * scale[1], b.box[2] * scale[0], b.box[3] * scale[1]]
                       for b in objects]
        if not captions:
            found.captions = [_object_caption(bundle, clean, b, size) for b in objects]
    if task == "segmentation":
        mask = (segmentation_scores(clean).argmax(dim=1, keepdim=True) == target.class_index).float()
        mask = torch.nn.functional.interpolate(mask, size=(photo.height, photo.width), mode="nearest")
        found.masks = mask[:, 0].bool().cpu().numpy()
    return found


def parse_box(text: str) -> list[float]:
    """A box given as text, "x0,y0,x1,y1" with x0 < x1 and y0 < y1; an OptionError otherwise."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise OptionError(f"box must be x0,y0,x1,y1 with x0 < x1 and y0 < y1, got {text!r}")
    return box


def detector_layers(model: torch.nn.Module) -> list[str] | None:
    """A torchvision detector's automatic layers: every level of its feature pyramid (the FPN's outputs, and
    RetinaNet's and FCOS's P6, P7), since an object's score reaches only the levels it was detected at
    (their maps are fused); an SSD's backbone output and extra blocks; else None (the engine chooses)."""
    names = [name for name, _ in model.named_modules()]
    levels = [n for n in names if re.fullmatch(r"backbone\.fpn\.(layer_blocks\.\d+|extra_blocks\.p\d+)", n)]
    if not levels and "backbone.extra" in names and "backbone.features" in names:
        levels = ["backbone.features", *(n for n in names if re.fullmatch(r"backbone\.extra\.\d+", n))]
    return levels or None


def _target(task, clean, bundle, photo, x, classes, box, min_score, reference, negative):
    """(target, captions; empty when known only after the call) for a task, from the clean output."""
    size, device = tuple(x.shape[2:]), x.device
    single = classes[0] if isinstance(classes, (list, tuple)) and len(classes) == 1 else classes
    if task == "segmentation":
        scores = segmentation_scores(clean)
        index = _index(single, bundle) if single is not None else _largest_class(scores, bundle.labels)
        return ClassRegion(index), [f"{bundle.label(index)} (its predicted pixels)"]
    if task == "detection":
        if box is None:
            return Detections(min_score=0.5 if min_score is None else min_score), []
        sx, sy = size[1] / photo.width, size[0] / photo.height
        scaled = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        label = _index(single, bundle) if single is not None else _overlapping_label(clean, scaled, size)
        return Box(scaled, label), []
    if task == "embedding":
        if reference is None:
            raise OptionError("the embedding task needs a reference image (--reference other.jpg)")
        other = reference if isinstance(reference, Image.Image) else load_image(reference)
        with torch.no_grad(), eval_mode(bundle.module):
            embedding = extract_logits(bundle.module(bundle.preprocess.batch([other]).to(device)))
        similarity = Similarity(embedding.reshape(1, -1)[0])
        value = float(similarity(clean))
        return similarity, [f"cosine similarity to {source_name(reference)}: {value:.3f}"]
    if task == "binary":
        logit = float(Binary()(clean)[0])
        positive = logit > 0 if single is None else _index(single, bundle) == 1
        side = "positive" if positive else "negative"
        return Binary(positive), [f"{side} (logit {logit:+.3g}, p {1 / (1 + np.exp(-logit)):.1%})"]
    if task == "multilabel":
        labels = None if classes is None else ([classes] if isinstance(classes, (int, str)) else list(classes))
        target = MultiLabel(labels, threshold=0.5 if min_score is None else min_score)
        chosen, _ = target.expand(clean, size, bundle.labels)
        logits = extract_logits(clean)[0]
        return target, [f"{bundle.label(i)} (p {float(torch.sigmoid(logits[i])):.1%})" for i in chosen[0].tolist()]
    index = 0 if single is None else _index(single, bundle)  # regression
    value = float(Regression(index)(clean)[0])
    way = "down" if negative else "up"
    return Regression(index, negative), [f"output {index} = {value:.4g} (what drives it {way})"]


def _index(value, bundle) -> int:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        return class_index(value, bundle.labels)
    return int(value)


def _largest_class(scores: torch.Tensor, labels) -> int:
    """The predicted class covering most pixels; background (class 0 named so) only if alone."""
    counts = torch.bincount(scores.argmax(dim=1).flatten(), minlength=scores.shape[1])
    if labels and str(labels[0]).lower() in _BACKGROUND and counts[1:].sum() > 0:
        counts[0] = 0
    return int(counts.argmax())


def _overlapping_label(clean, box, size) -> int:
    """The label of the detection that best overlaps ``box`` (in the input's pixels)."""
    from torchvision.ops import box_iou

    found = detections(clean, size)[0]
    if not len(found["boxes"]):
        raise TargetError("the detector found no object in this image")
    ious = box_iou(torch.tensor([box], dtype=found["boxes"].dtype), found["boxes"].cpu())[0]
    return int(found["labels"][int(ious.argmax())])


def _object_caption(bundle, clean, target: Box, size) -> str:
    """'label 87%' of the detection a Box matches."""
    from torchvision.ops import box_iou

    found = detections(clean, size)[0]
    ious = box_iou(torch.tensor([target.box], dtype=found["boxes"].dtype), found["boxes"].cpu())[0]
    ious = torch.where(found["labels"].cpu() == target.label, ious, torch.zeros_like(ious))
    return f"{bundle.label(target.label)} {float(found['scores'][int(ious.argmax())]):.0%}"

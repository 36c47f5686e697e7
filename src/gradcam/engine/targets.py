"""What to explain: the score y^c (pre-softmax) of a class, chosen per sample, any custom score, or a named
target for other tasks (a class over a region of a segmentation, a one-logit binary head, a regression
output, the similarity of an embedding to a reference)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from gradcam.errors import OptionError, TargetError, suggest

TargetSpec = Union[None, int, str, Sequence[Union[int, str]], torch.Tensor, np.ndarray, Callable[[Any], torch.Tensor]]


def class_spec(text: str | None) -> int | str | None:
    """A class given as text: an ASCII integer becomes an index, anything else stays a name."""
    if text is None or not text.strip():
        return None
    return int(text) if re.fullmatch(r"\s*-?[0-9]+\s*", text) else text.strip()


def extract_logits(output: Any) -> torch.Tensor:
    """The score tensor of a model's output: a tensor, the first of a tuple, a dict's "logits" (or
    first value), an object's ``.logits``, or a detector's per-image "scores" (padded with 0)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) and "scores" in o for o in output):
        return torch.nn.utils.rnn.pad_sequence([o["scores"] for o in output], batch_first=True)  # detections
    if isinstance(output, dict):
        value = output["logits"] if "logits" in output else next(iter(output.values()), None)
        return extract_logits(value)
    if hasattr(output, "logits"):
        return extract_logits(output.logits)
    if isinstance(output, (tuple, list)) and output:
        return extract_logits(output[0])
    raise TargetError(
        f"cannot find scores in a model output of type {type(output).__name__}; "
        "pass targets=callable(output) -> (B,) scores"
    )


def sample_scores(output: Any, batch: int, fn: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
    """The scores of a forward pass, detached, one row per sample: the model's score tensor
    (:func:`extract_logits`); or, where the output holds none — one structure per sample (a list of
    dicts), a 0-d tensor — and the target is a callable, the callable's own (B,) scores as (B, 1): a
    callable receives the raw output whatever its structure (torchcam's per-sample outputs)."""
    try:
        logits = extract_logits(output).detach()
    except TargetError:
        if fn is None:
            raise
        logits = None
    if fn is not None and (logits is None or logits.dim() == 0 or logits.shape[0] != batch
                           or _one_structure_per_sample(output, batch)):
        return custom_scores(fn, output, batch).detach()[:, None]
    return logits


def _one_structure_per_sample(output: Any, batch: int) -> bool:
    """A list or tuple of one non-tensor entry per sample, not a detector's dicts of scores."""
    return (isinstance(output, (list, tuple)) and len(output) == batch
            and not any(isinstance(o, torch.Tensor) for o in output)
            and not all(isinstance(o, dict) and "scores" in o for o in output))


def class_index(name: str, labels: Sequence[str] | None) -> int:
    """Index of a class name: an exact match first, else a case-insensitive match when only one class
    has that name (ImageNet has 'Cardigan', the corgi, and 'cardigan', the sweater); an error listing
    the candidates when several do, and close matches when none does."""
    if not labels:
        raise TargetError(f"target {name!r} is a class name but the model has no class names; pass an index")
    key = name.strip()
    if key in labels:
        return list(labels).index(key)
    folded = [i for i, label in enumerate(labels) if label.casefold() == key.casefold()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        found = ", ".join(f"{labels[i]!r} ({i})" for i in folded)
        raise TargetError(f"class name {name!r} matches {len(folded)} classes when case is ignored: {found}; "
                          "give the exact name or the index")
    raise TargetError(f"unknown class name {name!r}.{suggest(key, list(labels))}")


def resolve_classes(
    spec: TargetSpec, logits: torch.Tensor, labels: Sequence[str] | None = None
) -> torch.Tensor:
    """LongTensor (B,) of class indices on the logits' device.

    None -> the predicted class (argmax of the same forward pass); an int or a name -> that class
    for every sample; a sequence or tensor -> one entry per sample (its length must equal B).
    """
    if logits.dim() != 2:
        raise TargetError(
            f"model scores have shape {tuple(logits.shape)}, expected (B, num_classes); "
            "pass targets=callable(output) -> (B,) scores"
        )
    batch, classes = logits.shape
    if spec is None:
        return logits.detach().argmax(dim=1)
    if isinstance(spec, (int, str, np.integer)) or (isinstance(spec, (torch.Tensor, np.ndarray)) and spec.ndim == 0):
        spec = [spec] * batch
    items = spec.tolist() if isinstance(spec, (torch.Tensor, np.ndarray)) else list(spec)
    if len(items) != batch:
        raise TargetError(f"got {len(items)} targets for a batch of {batch}; pass one per sample or a single one")
    indices = [class_index(t, labels) if isinstance(t, str) else _as_index(t) for t in items]
    for index in indices:
        if not 0 <= index < classes:
            raise TargetError(f"class index {index} is out of range for a model with {classes} classes")
    return torch.tensor(indices, dtype=torch.long, device=logits.device)


def parse_targets(spec: TargetSpec, logits: torch.Tensor, labels: Sequence[str] | None, top_k: int | None,
                  batch: int) -> tuple[torch.Tensor, Callable | None]:
    """(classes, callable or None) for every kind of target: ``top_k`` -> the k best classes (B, k);
    a callable -> classes of -1 and the callable; a (B, k) tensor -> k given classes per sample;
    anything else -> :func:`resolve_classes` (B,)."""
    if top_k is not None:
        return logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices, None
    if callable(spec) and not isinstance(spec, torch.Tensor):
        return torch.full((batch,), -1, dtype=torch.long, device=logits.device), spec
    if isinstance(spec, torch.Tensor) and spec.dim() == 2:  # k given classes per sample
        if spec.shape[0] != batch:
            raise OptionError(f"got targets of shape {tuple(spec.shape)} for a batch of {batch}")
        if spec.is_floating_point() or ((spec < 0) | (spec >= logits.shape[-1])).any():
            raise TargetError(f"class indices must be integers in [0, {logits.shape[-1]}), got {spec.tolist()}")
        return spec.to(device=logits.device, dtype=torch.long), None
    return resolve_classes(spec, logits, labels), None


def _as_index(value: Any) -> int:
    """An int from an int, a numpy or torch integer, or an integral float; a TargetError otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise TargetError(f"target {value!r} is not a class index or name")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TargetError(f"target {value!r} is not a class index or name") from None
    if not number.is_integer():
        raise TargetError(f"target {value!r} is not a class index or name")
    return int(number)


def custom_scores(fn: Callable[[Any], torch.Tensor], output: Any, batch: int) -> torch.Tensor:
    """Scores (B,) from a user's callable on the raw model output, checked for shape."""
    scores = fn(output)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (batch,):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TargetError(f"target callable returned {shape}, expected a tensor of shape ({batch},)")
    if not torch.isfinite(scores.detach()).all():
        raise TargetError(f"target callable returned NaN or inf scores: {scores.detach().tolist()}")
    return scores


def copy_scores(fn: Callable[[Any], torch.Tensor], output: Any, rows: torch.Tensor, batch_output: Any,
                batch: int) -> torch.Tensor:
    """(N,) scores of N modified copies of samples ``rows`` (masked, ablated) under a user's callable.

    The callable was written for the user's batch (row b = sample b), so each copy is scored in a batch
    laid out like that one: the user's own output with row ``rows[n]`` replaced by copy n's output.
    """
    if batch_output is None:
        raise TargetError("a callable target needs the output of the explained batch to score copies")
    scores = []
    for n, b in enumerate(rows.tolist()):
        scores.append(custom_scores(fn, _with_row(batch_output, output, b, n, batch), batch)[b])
    return torch.stack(scores)


def _with_row(batch_output: Any, copies: Any, b: int, n: int, batch: int) -> Any:
    """``batch_output`` with row b of every per-sample tensor replaced by row n of ``copies``."""
    if isinstance(batch_output, torch.Tensor):
        if not isinstance(copies, torch.Tensor) or batch_output.dim() == 0 or batch_output.shape[0] != batch:
            return batch_output
        mixed = batch_output.detach().clone()
        mixed[b] = copies[n].to(mixed.dtype)
        return mixed
    if isinstance(batch_output, dict):
        items = {key: _with_row(value, copies[key], b, n, batch) for key, value in batch_output.items()}
        try:
            mixed = copy.copy(batch_output)
            mixed.update(items)
        except TypeError:  # an immutable mapping (a traced model's): a plain dict of the same items
            mixed = items
        return mixed
    if (isinstance(batch_output, (tuple, list)) and len(batch_output) == batch
            and all(isinstance(o, dict) for o in batch_output)):  # one entry per sample: a detector's dicts
        mixed = list(batch_output)
        mixed[b] = copies[n]
        return type(batch_output)(mixed)
    if isinstance(batch_output, (tuple, list)):
        items = [_with_row(v, c, b, n, batch) for v, c in zip(batch_output, copies)]
        return type(batch_output)(*items) if hasattr(batch_output, "_fields") else type(batch_output)(items)
    if hasattr(batch_output, "logits") and hasattr(copies, "logits"):
        mixed = copy.copy(batch_output)
        mixed.logits = _with_row(batch_output.logits, copies.logits, b, n, batch)
        return mixed
    raise TargetError(
        f"a callable target on copies of the input needs a model output of tensors, tuples, lists, dicts "
        f"or an object with .logits; got {type(batch_output).__name__}"
    )


@dataclass
class Target:
    """One score per sample to explain: a class per sample, or a user's callable on the output.

    ``output`` is the model's output on the user's batch: a callable is always shown a batch laid out
    like that one (row b = sample b), also for the masked or ablated copies of Score-CAM and
    Ablation-CAM, so that a callable that picks per-sample outputs gives the right score.
    """

    classes: torch.Tensor  # (B,) long; -1 when ``fn`` is given
    fn: Callable[[Any], torch.Tensor] | None = None
    output: Any = None

    def scores(self, output: Any, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) scores of a forward pass on N inputs; ``rows[n]`` is the sample input n comes from."""
        if self.fn is None:
            return class_scores(extract_logits(output), self.classes if rows is None else self.classes[rows])
        if rows is None:
            return custom_scores(self.fn, output, len(self.classes))
        return copy_scores(self.fn, output, rows, self.output, len(self.classes))


def class_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """y^c of each sample: (B, num_classes) logits and (B,) classes -> (B,)."""
    return logits.gather(1, classes[:, None])[:, 0]


# ----------------------------------------------------------------------------- named targets for other tasks


class TaskTarget:
    """A named target: a callable ``(model output) -> (B,)`` scores, usable wherever a target is.
    ``bind(output)`` fixes what it takes from the explained input's own output (a predicted mask), so
    that the noisy, masked or ablated copies of SmoothGrad, Score-CAM and Ablation-CAM are scored
    against the clean input's answer."""

    spatial = False  # scores pixels where they are: the flipped copies of augment=True would misread it

    def bind(self, output: Any, input_size: Sequence[int] | None = None) -> "TaskTarget":
        return self

    def __call__(self, output: Any) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class ClassRegion(TaskTarget):
    """Semantic segmentation: score = Σ over the mask of the class's logit at each pixel (pytorch-grad-cam's
    ``SemanticSegmentationTarget``). The output is (B, K, H, W) scores or a dict holding them under
    "out" (torchvision's segmenters); ``mask`` is (H, W) or (B, H, W), default the pixels predicted as
    the class. With one output channel (a sigmoid head) class 1 is the foreground (its logit, pixels with
    logit > 0) and class 0 the background (−logit, pixels with logit ≤ 0)."""

    class_index: int
    mask: Any = None
    spatial = True

    def bind(self, output: Any, input_size: Sequence[int] | None = None) -> "ClassRegion":
        if self.mask is not None:
            return self
        logits = segmentation_scores(output).detach()
        if logits.shape[1] == 1:
            mask = logits[:, 0] > 0 if self.class_index == 1 else logits[:, 0] <= 0
        else:
            mask = logits.argmax(dim=1) == self.class_index
        return replace(self, mask=mask)

    def __call__(self, output: Any) -> torch.Tensor:
        logits = segmentation_scores(output)
        classes = logits.shape[1]
        if classes == 1 and self.class_index in (0, 1):
            per_pixel = logits[:, 0] if self.class_index == 1 else -logits[:, 0]
        elif 0 <= self.class_index < classes:
            per_pixel = logits[:, self.class_index]
        else:
            raise TargetError(f"ClassRegion: class {self.class_index} for a segmenter with {classes} output channels")
        mask = self.bind(output).mask if self.mask is None else self.mask
        mask = torch.as_tensor(mask, device=per_pixel.device).to(per_pixel.dtype)
        if mask.shape[-2:] != per_pixel.shape[-2:] or mask.dim() not in (2, 3):
            raise TargetError(f"ClassRegion: a mask of shape {tuple(mask.shape)} for scores of shape "
                              f"{tuple(per_pixel.shape)}; give (H, W) or (B, H, W)")
        return (per_pixel * mask).sum(dim=(-2, -1))


def segmentation_scores(output: Any) -> torch.Tensor:
    """The (B, K, H, W) scores of a segmenter's output: a tensor, or a dict's "out" (torchvision)."""
    scores = output["out"] if isinstance(output, dict) and "out" in output else extract_logits(output)
    if scores.dim() != 4:
        raise TargetError(f"a segmentation target needs (B, K, H, W) scores, got shape {tuple(scores.shape)}")
    return scores


@dataclass(frozen=True)
class Binary(TaskTarget):
    """A one-logit (sigmoid) binary head: the positive class's map explains +logit, the negative class's
    −logit (the evidence for the other class), whatever the logit's sign."""

    positive: bool = True

    def __call__(self, output: Any) -> torch.Tensor:
        logits = extract_logits(output)
        if logits.dim() > 2 or (logits.dim() == 2 and logits.shape[1] != 1):
            raise TargetError(f"Binary needs one logit per sample, (B,) or (B, 1), got shape {tuple(logits.shape)}")
        logits = logits.reshape(len(logits))
        return logits if self.positive else -logits


@dataclass(frozen=True)
class Regression(TaskTarget):
    """A regression output: score = output[:, index] ((B,) outputs: the output itself); ``negative=True``
    explains what drives the prediction down (−output)."""

    index: int = 0
    negative: bool = False

    def __call__(self, output: Any) -> torch.Tensor:
        values = extract_logits(output)
        values = values.reshape(len(values), -1)
        if not 0 <= self.index < values.shape[1]:
            raise TargetError(f"Regression: index {self.index} for a model with {values.shape[1]} outputs")
        return -values[:, self.index] if self.negative else values[:, self.index]


@dataclass(frozen=True)
class Similarity(TaskTarget):
    """Embeddings: score = cos(e(x), r), the cosine similarity of the model's embedding (B, D) with a
    reference (D,) or one per sample (B, D), e.g. another image's embedding: which part of this image
    makes it match that one."""

    reference: Any

    def __call__(self, output: Any) -> torch.Tensor:
        embedding = extract_logits(output)
        embedding = embedding.reshape(len(embedding), -1)
        reference = torch.as_tensor(self.reference, device=embedding.device).to(embedding.dtype)
        reference = reference.reshape(-1, reference.shape[-1]) if reference.dim() else reference
        if (reference.dim() != 2 or reference.shape[-1] != embedding.shape[1]
                or len(reference) not in (1, len(embedding))):
            raise TargetError(f"Similarity: a reference of shape {tuple(reference.shape)} for embeddings of shape "
                              f"{tuple(embedding.shape)}; give (D,) or (B, D)")
        return torch.nn.functional.cosine_similarity(embedding, reference.expand_as(embedding), dim=1)


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


# ----------------------------------------------------------------------------- several maps per sample


class TargetSet:
    """Targets that give several maps per sample (one per object, one per label), chosen from the model's
    output on the explained input: ``expand`` -> (classes (B, k), one callable per column or None)."""

    def expand(self, output: Any, input_size: Sequence[int], labels: Sequence[str] | None
               ) -> tuple[torch.Tensor, list[Callable] | None]:
        raise NotImplementedError


@dataclass(frozen=True)
class Chosen(TargetSet):
    """Targets already expanded: the same classes and callables for the smoothing copies of an input."""

    classes: torch.Tensor
    fns: list | None = None

    def expand(self, output, input_size, labels):
        return self.classes, self.fns


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


@dataclass(frozen=True)
class MultiLabel(TargetSet):
    """Multi-label classification (one sigmoid per label): one map per label, each the label's logit.
    ``labels`` (indices or names) picks them; by default every label present, p = sigmoid(logit) ≥
    ``threshold``, highest first (a batch must then have the same number present in each sample)."""

    labels: Sequence[int | str] | None = None
    threshold: float = 0.5

    def expand(self, output, input_size, labels):
        logits = extract_logits(output).detach()
        if logits.dim() != 2:
            raise TargetError(f"MultiLabel needs (B, num_labels) scores, got shape {tuple(logits.shape)}")
        if self.labels is not None:
            if isinstance(self.labels, (str, int)) or not len(self.labels):
                raise TargetError("MultiLabel: labels must be a non-empty list of indices or names, "
                                  f"got {self.labels!r}")
            picked = [resolve_classes(label, logits, labels) for label in self.labels]
            return torch.stack(picked, dim=1), None
        present = torch.sigmoid(logits.float()) >= self.threshold
        counts = present.sum(dim=1).tolist()
        if min(counts) == 0:
            raise TargetError(f"MultiLabel: no label with p >= {self.threshold} in sample(s) "
                              f"{[i for i, c in enumerate(counts) if c == 0]}; lower threshold or name the labels")
        if len(set(counts)) > 1:
            raise TargetError(f"MultiLabel: the samples hold {counts} labels each; explain them one at a time "
                              "or name the labels")
        order = torch.where(present, logits, torch.full_like(logits, -torch.inf)).argsort(dim=1, descending=True)
        return order[:, :counts[0]], None

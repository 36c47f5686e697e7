"""Named targets for other tasks: a class over a region of a segmentation, a one-logit binary head, a
regression output, the similarity of an embedding to a reference."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from gradcam.engine.targets.classes import extract_logits
from gradcam.errors import TargetError


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

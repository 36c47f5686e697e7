"""Classes to explain: a class given by index or name, per sample or for all, the top k, the predicted
class from the same pass; a model's scores found in its output (a tensor, a tuple, a dict, ``.logits``)."""

from __future__ import annotations

import re
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


def class_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """y^c of each sample: (B, num_classes) logits and (B,) classes -> (B,)."""
    return logits.gather(1, classes[:, None])[:, 0]

"""A user's own score: a callable on the raw model output, checked; and how it scores the masked or ablated
copies of a sample (in a batch laid out like the user's)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch

from gradcam.engine.targets.classes import class_scores, extract_logits
from gradcam.errors import TargetError


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

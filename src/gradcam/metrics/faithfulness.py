"""Faithfulness of maps: does the model's score follow what a map says matters?

Each metric takes the model, the input batch, the maps (B, *spatial) of one class per sample (any
resolution: brought to the input's bilinearly, ``align_corners=False``) and the classes, and returns
per-sample values. The protocols are torchcam 0.5's (``torchcam.metrics``), and the tests hold them equal
to it; a class's score is its softmax probability (``score="probability"``, torchcam's ``logits_fn=softmax``)
or its logit (``score="logit"``).

The model's forward passes, the input's own and every perturbed copy's, run as the engine runs them
(:mod:`gradcam.engine.precision`): ``precision`` "fp32" (the default), "bf16", "fp16" or "auto" (bf16 where
the device computes it natively), under autocast with the scoring layer in float32; ``memory_format``
"auto" (channels-last input for convolution networks), "channels_last" or "contiguous". The scores are
taken to float32 before any curve or area. bf16 keeps 8 bits of mantissa: the logits move by about
1 % of their size (0.6 % on a seeded ResNet-18), enough to rank maps, not to quote four digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode, module_device
from gradcam.engine.precision import autocast, autocast_dtype, check, input_format
from gradcam.engine.targets import class_scores, extract_logits, resolve_classes
from gradcam.errors import OptionError
from gradcam.metrics.registry import register_metric

SCORES = ("probability", "logit")
DELETION_PROTOCOLS = ("torchcam", "rise")


class _Metric:
    """What the metrics share: the model in eval mode without autograd, its forward passes in the
    metric's precision and memory format, and a class's score."""

    def __init__(self, model: nn.Module, *, score: str = "probability", batch_size: int = 32,
                 labels: Sequence[str] | None = None, precision: str = "fp32", memory_format: str = "auto"):
        if score not in SCORES:
            raise OptionError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if int(batch_size) < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        check(precision, memory_format)
        autocast_dtype(precision, module_device(model))  # an unsupported device fails now
        self.model, self.score, self.batch_size, self.labels = model, score, int(batch_size), labels
        self.precision, self.memory_format = precision, memory_format

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits on ``x``, in the metric's precision and memory format."""
        layout = input_format(self.memory_format, self.model, x)
        with autocast(self.precision, x.device, self.model):
            return extract_logits(self.model(x if layout is None else x.contiguous(memory_format=layout))).float()

    def _scores(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(N,) scores of ``classes`` (N,) on the inputs ``x`` (N, ...), ``batch_size`` at a time."""
        parts = []
        for start in range(0, len(x), self.batch_size):
            logits = self._logits(x[start : start + self.batch_size])
            if self.score == "probability":
                logits = logits.softmax(dim=-1)
            parts.append(class_scores(logits, classes[start : start + self.batch_size]))
        return torch.cat(parts)

    def _prepare(self, x: torch.Tensor, maps: torch.Tensor, targets: Any) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        """(maps at the input's size, classes (B,), the classes' scores on ``x``)."""
        if not isinstance(x, torch.Tensor) or x.dim() < 3 or not x.is_floating_point():
            raise OptionError("x must be a floating-point (B, C, *spatial) tensor")
        maps = torch.as_tensor(maps, device=x.device).float()
        if maps.shape[0] != x.shape[0] or maps.dim() != x.dim() - 1:
            raise OptionError(f"maps must be one (*spatial) map per sample, (B, ...) with B = {x.shape[0]}, "
                              f"got {tuple(maps.shape)} for an input of {tuple(x.shape)}")
        if tuple(maps.shape[1:]) != tuple(x.shape[2:]):
            maps = Fn.upsample(maps, x.shape[2:])
        logits = self._logits(x)
        classes = resolve_classes(targets, logits, self.labels)
        scores = logits.softmax(dim=-1) if self.score == "probability" else logits
        return maps, classes, class_scores(scores, classes)


@dataclass
class DeletionInsertionResult:
    fractions: torch.Tensor  # (P,) the fraction of positions deleted or inserted at each point
    deletion: torch.Tensor  # (B, P) the score as the most important positions are deleted
    insertion: torch.Tensor  # (B, P) the score as they are inserted into the baseline

    @property
    def deletion_auc(self) -> torch.Tensor:
        """(B,) area under the deletion curve: lower is better."""
        return torch.trapezoid(self.deletion, self.fractions, dim=1)

    @property
    def insertion_auc(self) -> torch.Tensor:
        """(B,) area under the insertion curve: higher is better."""
        return torch.trapezoid(self.insertion, self.fractions, dim=1)

    def per_sample(self) -> dict[str, torch.Tensor]:
        return {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc}

    def curves(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"deletion" | "insertion": (fractions (P,), scores (B, P))}: the curves whose areas are the columns."""
        return {"deletion": (self.fractions, self.deletion), "insertion": (self.fractions, self.insertion)}


@register_metric("deletion", columns={"deletion_auc": "lower", "insertion_auc": "higher"})
class DeletionInsertion(_Metric):
    """Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, RISE): positions are ranked by the map,
    highest first (ties in order of position); deletion replaces the k best with a baseline, insertion
    starts from a baseline and puts the k best back, for k = 0, s, 2s, …, N with s = ⌈N / steps⌉ (the
    same k for every channel); each curve's area is taken by the trapezoid rule. All perturbed copies go
    through the model ``batch_size`` at a time, in ``precision`` (module docstring). Two protocols:

    - ``"torchcam"`` (the default), torchcam 0.5's ``DeletionInsertionMetric``: one baseline for both
      curves, zeros unless ``baseline`` is given (a tensor broadcast to the input, or a callable
      x -> baseline); the curves run over the fractions k / N.
    - ``"rise"``, the RISE paper's own (its ``CausalMetric``): deletion towards zeros of the normalised
      input, insertion from the image blurred by a Gaussian of 11 × 11 px, σ 5 (scipy's
      ``gaussian_filter`` of a unit impulse, as the authors build it, zero padding); the curves run
      over i / n for the n + 1 points, the area over [0, 1]; the paper's score is the softmax
      probability (``score="probability"``).
    """

    def __init__(self, model: nn.Module, *, steps: int = 20, baseline: Any = None, protocol: str = "torchcam",
                 **options):
        super().__init__(model, **options)
        if int(steps) < 1:
            raise OptionError(f"steps must be >= 1, got {steps}")
        if protocol not in DELETION_PROTOCOLS:
            raise OptionError(f"protocol must be one of {', '.join(DELETION_PROTOCOLS)}, got {protocol!r}")
        if baseline is not None and protocol == "rise":
            raise OptionError("protocol 'rise' sets its own baselines (zeros, and a blur for insertion); "
                              "give a baseline with protocol 'torchcam'")
        if baseline is not None and not isinstance(baseline, torch.Tensor) and not callable(baseline):
            raise OptionError(f"baseline must be a tensor or a callable x -> tensor, got {type(baseline).__name__}")
        self.steps, self.baseline, self.protocol = int(steps), baseline, protocol

    def __call__(self, x: torch.Tensor, maps: torch.Tensor, targets: Any = None) -> DeletionInsertionResult:
        with eval_mode(self.model), torch.inference_mode():
            maps, classes, scores = self._prepare(x, maps, targets)
            removed, inserted = self._baselines(x)
            b, n = maps.shape[0], maps[0].numel()
            step = -(-n // self.steps)
            counts = list(range(0, n, step)) + [n]
            ranks = maps.flatten(1).argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # places in order
            p = len(counts)
            # the copies to score: deletion's points 1..P-1 and insertion's 0..P-2 (the ends are x itself);
            # with one baseline for both, the all-baseline copy is scored once, for both curves
            shared = removed is inserted
            jobs = [(i, kind, j) for i in range(b) for kind, points in
                    (("deletion", range(1, p)), ("insertion", range(1 if shared else 0, p - 1))) for j in points]
            deletion, insertion = torch.empty(b, p, device=x.device), torch.empty(b, p, device=x.device)
            flat, removed, inserted = x.flatten(2), removed.flatten(2), inserted.flatten(2)
            k = torch.tensor(counts, device=x.device)
            for start in range(0, len(jobs), self.batch_size):  # a batch of copies in memory at a time
                chunk = jobs[start : start + self.batch_size]
                rows = torch.tensor([i for i, _, _ in chunk], device=x.device)
                best = (ranks[rows] < k[[j for _, _, j in chunk]][:, None])[:, None]  # (J, 1, N): the k best
                deleting = torch.tensor([kind == "deletion" for _, kind, _ in chunk], device=x.device)[:, None, None]
                copies = torch.where(deleting, torch.where(best, removed[rows], flat[rows]),
                                     torch.where(best, flat[rows], inserted[rows]))
                for (i, kind, j), value in zip(chunk, self._scores(copies.view(len(chunk), *x.shape[1:]),
                                                                   classes[rows]), strict=True):
                    (deletion if kind == "deletion" else insertion)[i, j] = value
            deletion[:, 0], insertion[:, -1] = scores, scores  # the input itself, as scored once
            if shared:
                insertion[:, 0] = deletion[:, -1]
        fractions = torch.arange(p) / (p - 1) if self.protocol == "rise" else k.float().cpu() / n
        return DeletionInsertionResult(fractions.to(x.device), deletion, insertion)

    def _baselines(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What deletion puts in and what insertion starts from."""
        if self.protocol == "rise":
            return torch.zeros_like(x), gaussian_blur(x)
        if self.baseline is None:
            return (torch.zeros_like(x),) * 2
        base = self.baseline(x) if callable(self.baseline) and not isinstance(self.baseline, torch.Tensor) \
            else self.baseline
        if not isinstance(base, torch.Tensor):
            raise OptionError(f"the baseline callable returned {type(base).__name__}, not a tensor")
        try:
            return (torch.broadcast_to(base.to(x), x.shape),) * 2
        except RuntimeError:
            raise OptionError(f"a baseline of shape {tuple(base.shape)} does not fit an input of "
                              f"{tuple(x.shape)}") from None


def rise_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """(size, size) the RISE authors' blur: scipy's ``gaussian_filter(impulse, sigma)`` of a centred unit
    impulse (truncated at 4 σ, the tails reflected back into the square), written out in torch."""
    radius = int(4 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
    line = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        j = (i + taps.long()) % (2 * size)  # scipy's "reflect": … c b a | a b c … | c b a …
        j = torch.where(j >= size, 2 * size - 1 - j, j)
        line[i] = weights[j == size // 2].sum()
    return torch.outer(line, line)


def gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Each channel of ``x`` (B, C, H, W) blurred by :func:`rise_kernel`, zero padding (RISE's ``blur``)."""
    if x.dim() != 4:
        raise OptionError(f"the RISE insertion baseline blurs images: x must be (B, C, H, W), got {tuple(x.shape)}")
    kernel = rise_kernel(size, sigma).to(x).expand(x.shape[1], 1, size, size)
    return torch.nn.functional.conv2d(x, kernel, padding=size // 2, groups=x.shape[1])


@dataclass
class ConfidenceResult:
    drop: torch.Tensor  # (B,) max(0, y − y_masked) / y
    increase: torch.Tensor  # (B,) bool: y < y_masked

    @property
    def average_drop(self) -> float:
        return float(self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        return float(self.increase.float().mean())

    def per_sample(self) -> dict[str, torch.Tensor]:
        return {"average_drop": self.drop, "increase_in_confidence": self.increase.float()}


@register_metric("confidence", columns={"average_drop": "lower", "increase_in_confidence": "higher"})
class Confidence(_Metric):
    """Average Drop and Increase in Confidence (Chattopadhay, Sarkar, Howlader & Balasubramanian, WACV
    2018, the Grad-CAM++ paper): the input is multiplied by its map E (in [0, 1], as a method gives it),
    and with y the class's score on x and y' on E ∘ x,

    drop = max(0, y − y') / y (lower is better), increase = [y < y'] (higher is better).

    torchcam's ``ClassificationMetric`` protocol (its 1e-7 in the denominator included)."""

    def __call__(self, x: torch.Tensor, maps: torch.Tensor, targets: Any = None) -> ConfidenceResult:
        with eval_mode(self.model), torch.inference_mode():
            maps, classes, scores = self._prepare(x, maps, targets)
            masked = self._scores(maps.unsqueeze(1) * x, classes)
        return ConfidenceResult(torch.relu(scores - masked) / (scores + 1e-7), scores < masked)

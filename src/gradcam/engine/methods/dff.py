"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, ECCV 2018, "Deep Feature Factorization for
Concept Discovery").

Not a registered CAM method: it gives k concepts shared by a batch, each with its region in every image
and its top classes, not one map per class, so it does not fit :class:`CAMMethod`'s call (classes in,
one map per class out). Use :class:`DeepFeatureFactorization` directly; its picture is
:func:`gradcam.render.concepts.concepts_picture`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine.methods.base import CAMMethod
from gradcam.errors import OptionError


def nmf(matrix: torch.Tensor, k: int, *, iterations: int = 500, tol: float = 1e-5, seed: int = 0,
        eps: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative factorisation V ≈ W H of a (m, n) non-negative matrix, W (m, k) and H (k, n) ≥ 0,
    minimising ‖V − WH‖_F by Lee & Seung's multiplicative updates (NeurIPS 2001):
    H ← H ⊙ WᵀV / WᵀWH, W ← W ⊙ VHᵀ / WHHᵀ. Seeded start |N(0, 1)|·√(mean(V)/k) (scikit-learn's
    ``init="random"``, drawn by torch); stops when the relative error changes by less than ``tol``."""
    v = matrix.double()
    if (v < 0).any():
        raise OptionError("nmf factorises a non-negative matrix")
    threads = torch.get_num_threads()
    small = v.device.type == "cpu" and v.numel() * k < 2**20
    if small:  # hundreds of tiny products: waking a thread pool for each costs far more than it saves
        torch.set_num_threads(1)
    try:
        w, h = _multiplicative_updates(v, k, iterations, tol, seed, eps)
        return w.to(matrix.dtype), h.to(matrix.dtype)
    finally:
        if small:
            torch.set_num_threads(threads)


def _multiplicative_updates(v: torch.Tensor, k: int, iterations: int, tol: float, seed: int, eps: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    scale = (v.mean() / k).sqrt()
    w = (torch.randn(v.shape[0], k, generator=gen, dtype=torch.float64).abs() * scale).to(v.device)
    h = (torch.randn(k, v.shape[1], generator=gen, dtype=torch.float64).abs() * scale).to(v.device)
    norm = v.norm().clamp_min(eps)
    previous = None
    for step in range(iterations):
        h = h * (w.T @ v) / ((w.T @ w) @ h).clamp_min(eps)
        w = w * (v @ h.T) / (w @ (h @ h.T)).clamp_min(eps)
        if step % 10 == 9:
            error = float((v - w @ h).norm() / norm)
            if previous is not None and abs(previous - error) < tol:
                break
            previous = error
    return w, h


@dataclass
class Concepts:
    """What :class:`DeepFeatureFactorization` gives for a batch.

    maps:       (B, k, H, W) each concept's region in each image at the input's resolution, min-max
                scaled per image and concept.
    raw:        (B, k, h, w) the NMF coefficients at the layer's resolution.
    embeddings: (k, C) each concept's activation vector (the NMF basis, plus the offset taken off).
    scores:     (k, classes) the head's scores of each embedding, or None without a head.
    error:      ‖A − WH‖_F / ‖A‖_F of the factorisation.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    embeddings: torch.Tensor
    scores: torch.Tensor | None
    error: float

    def top_classes(self, k: int = 2) -> list[list[tuple[int, float]]]:
        """For each concept, its ``k`` best classes as (index, softmax probability)."""
        if self.scores is None:
            return [[] for _ in range(self.embeddings.shape[0])]
        probs = self.scores.float().softmax(dim=-1)
        top = probs.topk(min(k, probs.shape[-1]), dim=-1)
        return [[(int(i), float(p)) for i, p in zip(idx, val)] for idx, val in zip(top.indices, top.values)]


class DeepFeatureFactorization(CAMMethod):
    """DFF: non-negative matrix factorisation of a layer's activations into k concepts and their regions.

    A (C, B·h·w) ≈ W H, W ≥ 0 (C, k) the concepts, H ≥ 0 (k, B·h·w) their heat maps, by multiplicative
    updates (Collins et al., ECCV 2018), jointly over the batch so that the concepts are shared. Each concept
    embedding W_:k is scored by the model's classifier head (``head``: a module (k, C) -> (k, classes);
    default the model's last ``nn.Linear`` when it takes C features), which names its top classes. A layer
    with negative activations (no ReLU after it) has each channel's negative minimum taken off first and
    added back to the embeddings (pytorch-grad-cam takes off every channel's minimum, also a positive one,
    which changes a ReLU layer's factorisation; the paper factorises ReLU activations as they are).
    """

    name = "dff"
    uses_gradients = False
    single_layer = True
    takes_reshape = False

    def __init__(self, model, target_layer=None, *, concepts: int = 5, head: nn.Module | None = None,
                 iterations: int = 500, **options):
        super().__init__(model, target_layer, **options)
        if int(concepts) < 1 or int(iterations) < 1:
            raise OptionError(f"concepts and iterations must be >= 1, got {concepts} and {iterations}")
        self.concepts, self.iterations, self.head = int(concepts), int(iterations), head

    def __call__(self, x: torch.Tensor, targets=None, **_) -> Concepts:  # type: ignore[override]
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5) or not x.is_floating_point():
            raise OptionError("input must be a floating-point (B, C, *spatial) tensor")
        self._batch = x.shape[0]
        self._resolve(x)
        if len(self._layers) != 1:
            raise OptionError(f"dff factorises one layer, got {len(self._layers)}")
        with torch.no_grad():
            run = self.forward(x)
            acts = self.as_map(run.activations[0]).float()  # (B, C, *spatial)
        b, c, *spatial = acts.shape
        matrix = torch.nan_to_num(acts.movedim(1, 0).reshape(c, -1))
        offset = matrix.amin(dim=1).clamp_max(0)
        w, h = nmf(matrix - offset[:, None], self.concepts, iterations=self.iterations, seed=self.seed)
        error = float((matrix - offset[:, None] - w @ h).norm() / matrix.norm().clamp_min(1e-30))
        raw = h.reshape(self.concepts, b, *spatial).movedim(0, 1)  # (B, k, *spatial)
        embeddings = (w + offset[:, None]).T  # (k, C)
        head = self.head if self.head is not None else _linear_head(self.model, c)
        scores = None
        if head is not None:
            with torch.no_grad():
                scores = head(embeddings.to(next(head.parameters(), embeddings).dtype))
        maps = Fn.normalize(Fn.upsample(raw.reshape(b * self.concepts, *spatial), x.shape[2:]), "minmax")
        return Concepts(maps.reshape(b, self.concepts, *x.shape[2:]), raw, embeddings, scores, error)


def _linear_head(model: nn.Module, features: int) -> nn.Module | None:
    """The model's classifier: timm's ``get_classifier()`` or its last ``nn.Linear``, when it takes
    ``features`` inputs."""
    head = model.get_classifier() if callable(getattr(model, "get_classifier", None)) else None
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    return head if isinstance(head, nn.Linear) and head.in_features == features else None

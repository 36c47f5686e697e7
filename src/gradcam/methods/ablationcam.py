"""Ablation-CAM (Desai & Ramaswamy, WACV 2020)."""

from __future__ import annotations

import warnings

import torch

from .. import functional as Fn
from ..errors import OptionError
from ..graph import LayerSuffix
from ..targets import extract_logits
from .base import CAMMethod, Pass, Target, eval_mode
from .registry import register_method


@register_method("ablationcam")
class AblationCAM(CAMMethod):
    """Ablation-CAM: how much the class score drops when one channel is zeroed; no gradient.

    w_k = (y^c − y_k^c) / y^c, y_k^c the score with A^k set to 0;  L^c = ReLU(Σ_k w_k A^k).
    As in the paper the weights assume y^c > 0: for a negative score they change sign, and for
    y^c = 0 they are 0. The ablated copies run only the network after the target layer (traced with
    torch.fx, checked against the full pass; a model that cannot be traced, or whose traced suffix
    does not reproduce its output, runs whole, with a warning), ``batch_size`` copies at a time.
    """

    uses_gradients = False

    def __init__(self, model, target_layer=None, *, batch_size: int = 64, **options):
        super().__init__(model, target_layer, **options)
        if int(batch_size) < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._suffix: LayerSuffix | None | bool = None  # False: the model could not be traced

    def run_model(self, x: torch.Tensor):
        suffix = self._layer_suffix()
        return suffix.run(x) if suffix else self.model(x)

    def _layer_suffix(self) -> LayerSuffix | None:
        if self._suffix is None:
            if len(self._layers) != 1:
                raise OptionError("ablationcam explains one layer at a time")
            try:
                self._suffix = LayerSuffix(self.model, self._layers[0][0])
            except Exception as exc:  # noqa: BLE001 - any tracing failure means: run the whole model
                warnings.warn(f"ablationcam: the model cannot be traced ({type(exc).__name__}: {exc}); "
                              "each ablated copy runs the whole network", stacklevel=3)
                self._suffix = False
        return self._suffix or None

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        try:
            return self._ablation_maps(run, targets)
        finally:
            if self._suffix:
                self._suffix.clear()

    def _check_suffix(self, run: Pass, acts: torch.Tensor) -> None:
        """Fall back to the whole model if the traced suffix, resumed for the samples in another order
        (so that a value wrongly taken per sample shows), does not give the full pass's output."""
        b = acts.shape[0]
        rows = torch.arange(b, device=acts.device).flip(0) if b > 1 else torch.zeros(2, dtype=torch.long)
        rows = rows.to(acts.device)
        expected = extract_logits(run.output)[rows].float()
        try:
            again = extract_logits(self._suffix.resume(rows, acts[rows].clone())).float()
            same = again.shape == expected.shape and torch.allclose(again, expected, rtol=1e-4, atol=1e-5)
        except Exception as exc:  # noqa: BLE001 - any failure means: run the whole model
            same, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "its output differs from the full pass"
        if not same:
            warnings.warn(f"ablationcam: the traced model cannot be resumed at the layer ({why}); "
                          "each ablated copy runs the whole network", stacklevel=4)
            self._suffix = False

    def _ablation_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        acts = run.activations[0]
        b, k = acts.shape[:2]
        original = torch.stack([t.scores(run.output).float() for t in targets])  # (T, B)
        ablated = torch.empty(len(targets), b, k, device=acts.device)
        eye = torch.eye(k, device=acts.device, dtype=torch.bool)
        with eval_mode(self.model), torch.inference_mode():
            if self._suffix:
                self._check_suffix(run, acts)
            for i in range(b):
                for start in range(0, k, self.batch_size):
                    stop = min(start + self.batch_size, k)
                    copies = acts[i].expand(stop - start, *acts.shape[1:]).clone()
                    copies[eye[start:stop, :, None, None].expand_as(copies)] = 0
                    rows = torch.full((stop - start,), i, dtype=torch.long, device=acts.device)
                    output = self._run_ablated(run, rows, copies)
                    for t, target in enumerate(targets):
                        ablated[t, i, start:stop] = target.scores(output, rows).float()
        y = original[:, :, None]
        weights = torch.where(y != 0, (y - ablated) / torch.where(y != 0, y, 1), 0)
        return [[Fn.relu(Fn.weighted_sum(w, acts.float()))] for w in weights]

    def _run_ablated(self, run: Pass, rows: torch.Tensor, copies: torch.Tensor):
        suffix = self._layer_suffix()
        if suffix:
            return suffix.resume(rows, copies)
        module = self._layers[0][1]
        handle = module.register_forward_hook(lambda m, i, o: copies)
        try:
            return self.model(run.x[rows])
        finally:
            handle.remove()

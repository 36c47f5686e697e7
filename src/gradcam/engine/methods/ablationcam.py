"""Ablation-CAM (Desai & Ramaswamy, WACV 2020)."""

from __future__ import annotations

import warnings

import torch

from gradcam.engine import functional as Fn
from gradcam.engine.capture import eval_mode, temporary_hooks
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.suffix import LayerSuffix
from gradcam.engine.targets import Target, extract_logits
from gradcam.errors import OptionError


@register_method("ablationcam")
class AblationCAM(CAMMethod):
    """Ablation-CAM: how much the class score drops when one channel is zeroed; no gradient.

    w_k = (y^c − y_k^c) / y^c, y_k^c the score with A^k set to 0;  L^c = ReLU(Σ_k w_k A^k).
    Channel k is zeroed in the layer's own layout (channels-first, channels-last, a transformer's patch
    tokens); a ``reshape=`` cannot be undone, so Ablation-CAM takes none.
    As in the paper the weights assume y^c > 0: for a negative score they change sign, and for
    y^c = 0 they are 0. The ablated copies run only the network after the target layer (traced with
    torch.fx, checked against the full pass; a model that cannot be traced, or whose traced suffix
    does not reproduce its output, runs whole, with a warning), ``batch_size`` copies at a time.
    Several target layers are ablated one layer at a time and fused like every method's maps.
    """

    uses_gradients = False
    takes_reshape = False  # it zeroes channels in the layer's own layout

    def __init__(self, model, target_layer=None, *, batch_size: int = 64, **options):
        super().__init__(model, target_layer, **options)
        if int(batch_size) < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._suffixes: dict[str, LayerSuffix | None] = {}  # None: the model could not be traced

    def run_model(self, x: torch.Tensor):
        if len(self._layers) == 1 and not self._multi_input:  # the main pass also records what the suffix needs
            suffix = self._suffix(self._layers[0][0])
            if suffix is not None:
                return suffix.run(x)
        return super().run_model(x)

    @property
    def _multi_input(self) -> bool:
        """A call with other inputs than ``x``: the traced suffix takes one input, so the whole model runs."""
        return bool(self._forward_args or self._forward_kwargs)

    def _suffix(self, layer: str) -> LayerSuffix | None:
        if self._multi_input:
            return None
        if layer not in self._suffixes:
            try:
                self._suffixes[layer] = LayerSuffix(self.model, layer)
            except Exception as exc:  # noqa: BLE001 - any tracing failure means: run the whole model
                warnings.warn(f"{self.name}: the model cannot be traced ({type(exc).__name__}: {exc}); "
                              "each ablated copy runs the whole network", stacklevel=4)
                self._suffixes[layer] = None
        return self._suffixes[layer]

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        original = self.original_scores(run, targets)
        try:
            per_layer = [self._layer_maps(run, index, original, targets) for index in range(len(self._layers))]
        finally:
            for suffix in self._suffixes.values():
                if suffix is not None:
                    suffix.clear()
        return [list(maps) for maps in zip(*per_layer)]

    def _tail(self, name: str, run: Pass, acts):
        """The traced network after layer ``name``, ready to resume from its output (None: each copy runs the
        whole model); called in the pass's own modes."""
        suffix = self._suffix(name)
        if suffix is not None and len(self._layers) > 1:
            suffix.run(run.x)  # the main pass ran whole: record what this layer's suffix needs
        if suffix is not None and not self._resumes(suffix, run, acts, name):
            suffix = self._suffixes[name] = None
        return suffix

    def original_scores(self, run: Pass, targets: list[Target]) -> torch.Tensor | None:
        """(T, B) the targets' scores of the unablated pass, which each ablated score is compared with."""
        return torch.stack([t.scores(run.output).float() for t in targets])

    def _layer_maps(self, run: Pass, index: int, original: torch.Tensor, targets: list[Target]) -> list[torch.Tensor]:
        """One raw map per target for layer ``index``: each of its channels zeroed in turn."""
        name, module = self._layers[index]
        acts, layout = run.activations[index], self._readers[index]
        b, k = layout.map_shape(acts.shape)[:2]
        ablated = torch.empty(len(targets), b, k, device=acts.device)
        with eval_mode(self.model), torch.inference_mode(), self.autocast(acts.device):
            suffix = self._tail(name, run, acts)
            for i in range(b):
                for start in range(0, k, self.batch_size):
                    stop = min(start + self.batch_size, k)
                    copies = acts[i].expand(stop - start, *acts.shape[1:]).clone()
                    layout.ablate(copies, torch.arange(start, stop, device=acts.device))
                    rows = torch.full((stop - start,), i, dtype=torch.long, device=acts.device)
                    output = (suffix.resume(rows, copies) if suffix is not None
                              else self._run_whole(run.x[rows], rows, module, copies))
                    for t, target in enumerate(targets):
                        ablated[t, i, start:stop] = target.scores(output, rows).float()
        y = original[:, :, None]
        weights = torch.where(y != 0, (y - ablated) / torch.where(y != 0, y, 1), 0)
        return [Fn.relu(Fn.weighted_sum(w, layout(acts).float())) for w in weights]

    def _resumes(self, suffix: LayerSuffix, run: Pass, acts: torch.Tensor, name: str) -> bool:
        """Whether the traced suffix, resumed for the samples in another order (so that a value wrongly
        taken per sample shows), gives the full pass's output; warns when it does not."""
        b = acts.shape[0]
        rows = torch.arange(b, device=acts.device).flip(0) if b > 1 else torch.zeros(2, dtype=torch.long)
        rows = rows.to(acts.device)
        try:
            expected = extract_logits(run.output)[rows].float()
            again = extract_logits(suffix.resume(rows, acts[rows].clone())).float()
            same = again.shape == expected.shape and torch.allclose(again, expected, rtol=1e-4, atol=1e-5)
        except Exception as exc:  # noqa: BLE001 - any failure means: run the whole model
            same, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "its output differs from the full pass"
        if not same:
            warnings.warn(f"{self.name}: the traced model cannot be resumed at layer {name!r} ({why}); "
                          "each ablated copy runs the whole network", stacklevel=5)
        return same

    def _run_whole(self, x: torch.Tensor, rows: torch.Tensor, module: torch.nn.Module, copies: torch.Tensor):
        """The whole model on ``x`` (copies of samples ``rows``) with ``module``'s output replaced by ``copies``."""
        with temporary_hooks([(module, lambda m, i, o: copies)]):
            return self.run_rows(x, rows)

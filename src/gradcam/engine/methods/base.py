"""The lifecycle every CAM method shares: checks, hooks, one forward, targets, smoothing, maps."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
from torch import nn

from gradcam.engine import functional as Fn
from gradcam.engine import precision as precision_rules
from gradcam.engine.capture import ActivationCapture, detached, eval_mode, like, module_device, tensors_of
from gradcam.engine.layers import LayerSpec, check_input_axes, layer_reader, resolve_layers
from gradcam.engine.output import CAMOutput, Pass
from gradcam.engine.targets import Chosen, Target, TargetSet, TargetSpec, is_detection, parse_targets, sample_scores
from gradcam.errors import LayerError, ModelError, OptionError, TargetError


class CAMMethod:
    """Base class of the CAM methods. Gradient methods define :meth:`combine` only; others
    override :meth:`raw_maps` (and set ``uses_gradients = False``).

    The model is run once, in eval mode, with no autograd graph before the first target layer; the
    gradients of the target scores are taken with ``torch.autograd.grad`` with respect to the captured
    activations only (no parameter gradient is computed). The caller's train/eval modes, grad mode,
    ``requires_grad`` and ``.grad`` are left as they were; hooks live only during a call.

    Options of every method: ``smooth=N`` averages the raw maps over N noisy copies of the input
    (SmoothGrad, Smilkov et al. 2017; noise σ = ``noise`` × the input's value range, seeded by
    ``seed``; the same draws for every sample of a batch, so a sample's map is the one it gets
    alone), and ``augment=True`` also averages over the horizontally flipped input, its map flipped
    back. The classes explained are those of the clean input.

    Inputs are (B, C, L) signals, (B, C, H, W) images or (B, C, D, H, W) volumes and clips; maps are
    (B, L), (B, H, W) or (B, D, H, W). A target layer's output is read as a map by its layout
    (:mod:`gradcam.engine.layouts`: channels-first, channels-last, a vision transformer's tokens), or by
    ``reshape``, a callable (layer output) -> (B, C, *spatial) like pytorch-grad-cam's
    ``reshape_transform``, applied to the activations and, the same way, to their gradients.
    ``precision`` ("fp32", "bf16", "fp16",
    "auto") and ``memory_format`` ("auto", "channels_last", "contiguous") say how the model runs
    (:mod:`gradcam.engine.precision`).
    """

    name = "base"
    # What a method needs and gives (registry metadata: `gradcam methods`, `--method all`, the web app)
    uses_gradients = True  # needs the gradient of the target score
    needs_layer = True  # explains a target layer (False: works on the input, like guided backprop)
    single_layer = False  # one target layer at a time
    needs_linear_head = False  # the layer must feed global average pooling + one nn.Linear (CAM)
    class_free = False  # the same map whatever the class (Eigen-CAM)
    output_kind = "heatmap"  # "heatmap": (B, H, W) maps; "image": (B, 3, H, W) input-space pictures
    # memory_format="auto" gives a convolution network channels-last input: the same maps to float
    # rounding. Not for input gradients through guided ReLUs, whose 1[x > 0] gates flip on rounding.
    channels_last_by_default = True
    takes_reshape = True  # the maps can be read from a reshaped view of the layer's output
    # The pass that captures the activations (and chooses the classes) runs in `precision` too; a
    # method that runs thousands of other passes (Score-CAM) may capture in float32 at no real cost.
    captures_in_float32 = False
    # Reads the target layers' activations alone (no gradient, no pass of its own): it can run from another
    # method's pass (:mod:`.together`). Methods that define only `combine` share a pass without it.
    shares_pass = False

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec = None,
        *,
        labels: Sequence[str] | None = None,
        normalize: str = "minmax",
        smooth: int = 0,
        noise: float = 0.15,
        augment: bool = False,
        seed: int = 0,
        precision: str = "fp32",
        memory_format: str = "auto",
        reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if hasattr(model, "module") and hasattr(model, "preprocess"):  # a ModelBundle
            labels = labels if labels is not None else model.labels
            model = model.module
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        Fn.check_normalize(normalize)
        if int(smooth) < 0 or float(noise) < 0:
            raise OptionError(f"smooth must be >= 0 and noise >= 0, got smooth={smooth}, noise={noise}")
        if labels is not None and (isinstance(labels, str) or not all(isinstance(n, str) for n in labels)):
            raise OptionError("labels must be a sequence of class names (strings), one per class")
        self.model = model
        self.labels = list(labels) if labels is not None else None
        self.normalize = normalize
        self.smooth, self.noise, self.augment, self.seed = int(smooth), float(noise), bool(augment), seed
        precision_rules.check(precision, memory_format)
        self.precision, self.memory_format = precision, memory_format
        precision_rules.autocast_dtype(precision, module_device(model))  # an unsupported device fails now
        if reshape is not None and (not callable(reshape) or not self.takes_reshape):
            raise OptionError("reshape must be a callable (layer output) -> (B, C, *spatial)"
                              + ("" if callable(reshape) else f", got {type(reshape).__name__}")
                              + ("" if self.takes_reshape else f"; {self.name} works on the layer's own layout"))
        self.reshape = reshape
        self._readers: list[Callable] = []  # each layer's output as a map, found per call (.layouts)
        self._forward_args: tuple = ()  # a multi-input model's other inputs, for one call
        self._forward_kwargs: dict = {}
        self._batch = 0
        self._layer_spec = target_layer
        self._layers: list[tuple[str, nn.Module]] | None = None
        if target_layer is not None and self.needs_layer:  # names and modules are checked now
            self._layers = resolve_layers(model, target_layer)

    def __enter__(self) -> "CAMMethod":
        return self

    def __exit__(self, *exc) -> bool:
        return False  # nothing outlives a call; exceptions propagate unchanged

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self._layers] if self._layers else []

    @classmethod
    def info(cls) -> dict:
        """The method's metadata: what it needs and what it gives."""
        return {"name": cls.name, "description": (cls.__doc__ or "").strip().splitlines()[0],
                "uses_gradients": cls.uses_gradients, "needs_layer": cls.needs_layer,
                "single_layer": cls.single_layer, "needs_linear_head": cls.needs_linear_head,
                "class_free": cls.class_free, "output_kind": cls.output_kind}

    def unsuitable(self, x: torch.Tensor | None = None) -> str:
        """'' when this method can explain the model at its target layers for inputs like ``x`` (one
        probe forward at most), else the reason it cannot."""
        if self.needs_layer:
            try:
                self._resolve(x)
            except LayerError as exc:
                return str(exc)
            if self.single_layer and len(self._layers) > 1:
                return f"{self.name} explains one layer at a time, got {len(self._layers)}"
        return ""

    def _resolve(self, x: torch.Tensor | None) -> None:
        if self._layers is None:
            self._layers = resolve_layers(self.model, self._layer_spec, x) if self.needs_layer else []

    # ------------------------------------------------------------------ what a method defines

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(B, K, *spatial) activations and gradients (float32) -> raw map (B, *spatial)."""
        raise NotImplementedError

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        """Raw maps for each target (outer list) and each layer (inner list), from one forward pass.

        Default: gradients of the target scores w.r.t. the activations, then :meth:`combine`.
        """
        scores = [target.scores(run.output) for target in targets]
        return [self._gradient_maps(s, run.activations, last=i == len(scores) - 1) for i, s in enumerate(scores)]

    # ------------------------------------------------------------------ the call

    def __call__(
        self,
        x: torch.Tensor,
        targets: TargetSpec = None,
        *,
        top_k: int | None = None,
        normalize: str | None = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: dict | None = None,
    ) -> CAMOutput:
        """Maps of ``x`` for ``targets`` (None: the predicted class; an index or name, one per sample, a
        (B, k) tensor, a callable (output) -> (B,) scores or a target object). A multi-input model runs
        as ``model(x, *forward_args, **forward_kwargs)``; the maps are at ``x``'s resolution."""
        normalize = self.normalize if normalize is None else normalize
        Fn.check_normalize(normalize)
        if isinstance(x, torch.Tensor):
            check_input_axes(self.model, x)
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise OptionError("input must be a (B, C, L) signal, (B, C, H, W) image or (B, C, D, H, W) volume "
                              f"tensor, got {shape}")
        if not x.is_floating_point():
            raise OptionError(f"input must be a floating-point tensor, got {x.dtype}; preprocess it first "
                              "(e.g. x.float() / 255, then the model's normalisation)")
        if self.augment and getattr(targets, "spatial", False):
            raise OptionError(f"augment=True flips the input, and a {type(targets).__name__} target scores pixels "
                              "where they are; use smooth= instead")
        if top_k is not None and (top_k < 1 or targets is not None):
            raise OptionError("top_k must be >= 1 and cannot be combined with targets")
        if not isinstance(forward_args, (tuple, list)) or not isinstance(forward_kwargs or {}, dict):
            raise OptionError("forward_args must be a tuple of the model's other inputs and forward_kwargs a dict")
        self._forward_args, self._forward_kwargs = tuple(forward_args), dict(forward_kwargs or {})
        self._batch = x.shape[0]
        self._resolve(x)
        mode = ("contiguous" if self.memory_format == "auto" and not self.channels_last_by_default
                else self.memory_format)
        layout = precision_rules.input_format(mode, self.model, x)
        x = x if layout is None else x.contiguous(memory_format=layout)
        # Scores and gradients need autograd even when the caller is in no_grad or inference mode;
        # both contexts restore the caller's modes on exit.
        with torch.inference_mode(False), torch.enable_grad():
            classes, chosen, logits, raws = self._explain(x, targets, top_k)
            for variant, undo in self._variants(x):
                _, _, _, more = self._explain(variant, chosen, None)
                raws = [[a + undo(b) for a, b in zip(ra, rb)] for ra, rb in zip(raws, more)]
            if self.smooth or self.augment:
                count = 1 + self.smooth + int(self.augment)
                raws = [[m / count for m in per_layer] for per_layer in raws]
        out = self._output(x, raws, classes, logits, normalize, ranked=classes.dim() == 2)
        if isinstance(targets, TargetSet) and chosen.fns is not None:
            out.objects = list(chosen.fns)
        return out

    def _explain(self, x, targets, top_k):
        """(classes, the targets as chosen, logits, raw maps per rank per layer) for one input; the
        chosen targets explain the smoothing copies of the same input."""
        run = self.forward(x)
        logits = sample_scores(run.output, x.shape[0], _one_callable(targets))
        self._check_pass(run, logits)
        if isinstance(targets, TargetSet):  # several maps per sample, chosen from this output
            classes, fns = targets.expand(run.output, tuple(x.shape[2:]), self.labels)
            classes = classes.to(logits.device)
            if fns is not None and not isinstance(targets, Chosen):
                fns = [f.bind(run.output, tuple(x.shape[2:])) if hasattr(f, "bind") else f for f in fns]
        else:
            classes, fn = parse_targets(targets, logits, self.labels, top_k, x.shape[0])
            if fn is not None and hasattr(fn, "bind"):  # a named target fixes what it takes from this output
                fn = fn.bind(run.output, tuple(x.shape[2:]))
            fns = None if fn is None else [fn]
        columns = classes.unbind(1) if classes.dim() == 2 else [classes]
        per_column = fns or [None] * len(columns)  # one callable per column, or none
        raws = self.raw_maps(run, [Target(c, f, run.output) for c, f in zip(columns, per_column)])
        return classes, Chosen(classes, fns), logits, raws

    def _check_pass(self, run: Pass, logits: torch.Tensor) -> None:
        """Scores and activations a map can be computed from: finite, and labels that fit the scores."""
        if logits.dim() == 0:
            raise TargetError("the model returned a single number (0-d), not one score per sample; "
                              "return (B, num_classes) scores or pass targets=callable(output) -> (B,)")
        bad = ~torch.isfinite(logits.reshape(logits.shape[0], -1)).all(dim=1)
        if bad.any():
            raise ModelError(f"the model's scores hold NaN or inf for sample(s) {bad.nonzero()[:, 0].tolist()}: "
                             "no map can be computed (check the input and the weights)")
        for (name, _), act in zip(self._layers or [], run.activations):
            if not all(torch.isfinite(t).all() for t in tensors_of(act) if t.is_floating_point()):
                raise ModelError(f"layer {name!r} gives NaN or inf activations: no map can be computed")
        if (self.labels is not None and logits.dim() == 2 and len(self.labels) != logits.shape[-1]
                and not is_detection(run.output)):
            raise OptionError(f"labels: {len(self.labels)} class names for a model with {logits.shape[-1]} "
                              "scores; give one name per class")

    def _variants(self, x: torch.Tensor):
        """(input, undo) pairs for smoothing: noisy copies and the flipped image."""
        if self.smooth:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
            span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * (x.dim() - 1))
            for _ in range(self.smooth):
                # one draw for every sample: a sample's map does not depend on the batch it came in
                noise = torch.randn(x.shape[1:], generator=gen, device=x.device, dtype=x.dtype)
                yield x + noise * (self.noise * span), _same
        if self.augment:
            yield x.flip(-1), _flip

    def _output(self, x, raws, classes, logits, normalize, ranked) -> CAMOutput:
        size = x.shape[2:]
        per_rank = [self.finish(per_layer, size, normalize) for per_layer in raws]
        maps = torch.stack(per_rank, dim=1) if ranked else per_rank[0]
        per_layer = [torch.stack(r, dim=1) for r in zip(*raws)] if ranked else raws[0]
        raw = per_layer[0] if len(per_layer) == 1 else tuple(per_layer)
        return CAMOutput(maps, raw, classes, logits, self.layer_names)

    def finish(self, raws: list[torch.Tensor], size, normalize: str) -> torch.Tensor:
        """Maps at the input resolution from the raw maps of each layer (upsample, fuse, normalise)."""
        return Fn.fuse(raws, size, normalize)

    # ------------------------------------------------------------------ the forward pass

    def forward(self, x: torch.Tensor) -> Pass:
        """One forward pass in eval mode with the target layers captured; the caller's state restored.

        Gradient methods record a graph from the first target layer on; the others record none.
        """
        with eval_mode(self.model), ActivationCapture(self._layers, record_graph=self.uses_gradients,
                                                      structured=self.reshape is not None) as capture:
            try:
                torch.set_grad_enabled(False)  # the first target layer's hook turns it back on
                with contextlib.nullcontext() if self.captures_in_float32 else self.autocast(x.device):
                    output = self.run_model(x)
            finally:
                torch.set_grad_enabled(True)
        activations = capture.checked()
        self._readers = [layer_reader(name, act, x.shape[2:], self.model, self.reshape, batch=x.shape[0])
                         for (name, _), act in zip(self._layers or [], activations)]
        return Pass(x, output, activations)

    def as_map(self, tensor: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Layer ``index``'s captured activation (or its gradient) as the (B, C, *spatial) map the method
        combines."""
        return self._readers[index](tensor)

    def autocast(self, device: torch.device):
        """The context every forward pass of the model runs in for ``precision`` (:mod:`..precision`)."""
        return precision_rules.autocast(self.precision, device, self.model)

    def run_model(self, x: torch.Tensor) -> Any:
        """The model's forward pass (a method may run it another way that gives the same output)."""
        return self.model(x, *self._forward_args, **self._forward_kwargs)

    def run_rows(self, x: torch.Tensor, rows: torch.Tensor) -> Any:
        """The model on ``x``, copies of samples ``rows`` of this call's input: a multi-input model's
        other inputs are taken for the same samples (every tensor whose first axis is the batch)."""
        batch = self._batch
        args = [per_sample(a, rows, batch) for a in self._forward_args]
        kwargs = {k: per_sample(v, rows, batch) for k, v in self._forward_kwargs.items()}
        return self.model(x, *args, **kwargs)

    def _gradient_maps(self, scores: torch.Tensor, activations, *, last: bool) -> list[torch.Tensor]:
        """Raw maps (B, h, w), one per layer, from the gradients of the (B,) target scores."""
        if not scores.requires_grad:
            raise LayerError(f"the target score does not depend on layer(s) {', '.join(self.layer_names)}")
        per_layer = [tensors_of(act) for act in activations]  # a layer may give a dict of tensors (reshape=)
        leaves = [t for tensors in per_layer for t in tensors if t.requires_grad]
        found, scale = self._gradients(scores, leaves, last=last)
        given = iter(found)
        maps = []
        for i, ((name, _), act, tensors) in enumerate(zip(self._layers, activations, per_layer)):
            grads = [next(given) if t.requires_grad else None for t in tensors]
            if all(g is None for g in grads):
                raise LayerError(f"the target score does not depend on layer {name!r}")
            maps.append(self.combine(self.as_map(detached(act), i).float(),
                                     self.as_map(like(act, grads), i).float() / scale))
        return maps

    def _gradients(self, scores: torch.Tensor, inputs, *, last: bool) -> tuple[tuple, float]:
        """Gradients of the summed scores with respect to ``inputs``, and the scale they carry: in float16
        the scores are scaled up first (:func:`..precision.gradient_scale`) and, should a gradient
        overflow, down again, so that no gradient underflows or overflows."""
        dtype = precision_rules.autocast_dtype(self.precision, scores.device)
        scale = precision_rules.gradient_scale(scores, dtype)
        while True:
            retry = dtype is torch.float16 and scale > 1.0
            grads = torch.autograd.grad(scores.sum() * scale, inputs, retain_graph=retry or not last,
                                        allow_unused=True)
            if not retry or all(g is None or torch.isfinite(g).all() for g in grads):
                return grads, scale
            scale /= 2.0**8


def per_sample(value: Any, rows: torch.Tensor, batch: int) -> Any:
    """``value`` for samples ``rows``: a tensor whose first axis is the batch is indexed, tuples, lists
    and dicts are looked into, anything else is shared by every sample."""
    if isinstance(value, torch.Tensor):
        return value[rows.to(value.device)] if value.dim() > 0 and value.shape[0] == batch else value
    if isinstance(value, (tuple, list)):
        return type(value)(per_sample(v, rows, batch) for v in value)
    if isinstance(value, dict):
        return {k: per_sample(v, rows, batch) for k, v in value.items()}
    return value


def _one_callable(targets: Any) -> Callable | None:
    """The callable target of a call (or of its smoothing copies), if there is exactly one."""
    if isinstance(targets, Chosen):
        return targets.fns[0] if targets.fns is not None and len(targets.fns) == 1 else None
    return targets if callable(targets) and not isinstance(targets, torch.Tensor) else None


def _same(m: torch.Tensor) -> torch.Tensor:
    return m


def _flip(m: torch.Tensor) -> torch.Tensor:
    return m.flip(-1)

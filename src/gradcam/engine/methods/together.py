"""Several methods on one model from one forward pass: what a side-by-side comparison runs.

Methods that read nothing but the target layers' activations and their gradients (Grad-CAM, Grad-CAM++,
XGrad-CAM, HiResCAM, LayerCAM, EigenGrad-CAM: each defines only ``combine``) and methods that read the
activations alone (Eigen-CAM, KPCA-CAM, FEM: ``shares_pass``) need the same pass when they explain the same
layers of the same model with the same pass settings (precision, memory format, reshape, smoothing). Such
methods run together: one forward pass, one backward pass per target for every gradient method at once,
then each method's own arithmetic on the same numbers. Every other method runs alone. The maps are those
of each method called by itself (the tests hold them equal), for 1 forward instead of M.
"""

from __future__ import annotations

from typing import Sequence

import torch

from gradcam.engine.capture import detached
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.output import CAMOutput, Pass
from gradcam.engine.targets import Target, TargetSet, TargetSpec


def explain_together(methods: Sequence[CAMMethod], x: torch.Tensor, targets: TargetSpec = None, *,
                     top_k: int | None = None, normalize: str | None = None) -> list[CAMOutput]:
    """Each method's output for ``x`` (as ``method(x, targets, top_k=, normalize=)`` gives it), the methods
    that can share a pass grouped into one."""
    outputs: list[CAMOutput | None] = [None] * len(methods)
    for group in groups(methods, x, targets):
        if len(group) == 1:
            outputs[group[0]] = methods[group[0]](x, targets, top_k=top_k, normalize=normalize)
        else:
            found = _Together([methods[i] for i in group])(x, targets, top_k=top_k, normalize=normalize)
            for i, out in zip(group, found):
                outputs[i] = out
    return outputs


def groups(methods: Sequence[CAMMethod], x: torch.Tensor | None = None, targets: TargetSpec = None) -> list[list[int]]:
    """The methods' indices, grouped: each group runs from one pass (a group of one runs alone)."""
    found: dict[tuple, list[int]] = {}
    alone = []
    for i, method in enumerate(methods):
        key = None if isinstance(targets, TargetSet) else pass_key(method, x)
        if key is None:
            alone.append([i])
        else:
            found.setdefault(key, []).append(i)
    return sorted(list(found.values()) + alone)


def pass_key(method: CAMMethod, x: torch.Tensor | None = None) -> tuple | None:
    """What a method's pass depends on (methods with equal keys share one), or None when it runs its own."""
    kind = type(method)
    gradient = (kind.raw_maps is CAMMethod.raw_maps and kind.combine is not CAMMethod.combine
                and method.uses_gradients)
    if not (gradient or method.shares_pass) or any(getattr(kind, name) is not getattr(CAMMethod, name)
                                                   for name in _PASS_STEPS):
        return None
    try:
        method._resolve(x)
    except Exception:  # noqa: BLE001 - the method's own call says why, alone
        return None
    layers = tuple(id(module) for _, module in method._layers or [])
    return (id(method.model), layers, tuple(method.labels or ()), method.normalize, method.smooth, method.noise,
            method.augment, method.seed, method.precision, method.memory_format, method.channels_last_by_default,
            method.captures_in_float32, id(method.reshape))


# How the base class runs a call and its pass: a method that runs any of them its own way runs alone.
_PASS_STEPS = ("__call__", "_explain", "_check_pass", "_variants", "forward", "run_model", "autocast", "_gradients",
               "_gradient_maps", "as_map")


class _Together(CAMMethod):
    """The methods of one group as one: the first one's pass, each method's raw maps stacked on axis 1."""

    name = "together"

    def __init__(self, methods: Sequence[CAMMethod]):  # the first method's checked state, not a new one
        vars(self).update(vars(methods[0]))
        self.methods = list(methods)
        self.gradient = [j for j, m in enumerate(self.methods) if not m.shares_pass]
        self.uses_gradients = bool(self.gradient)
        self.channels_last_by_default = methods[0].channels_last_by_default
        self.captures_in_float32 = methods[0].captures_in_float32

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.methods[j].combine(activations, grads) for j in self.gradient], dim=1)

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        per_method: list[list[list[torch.Tensor]] | None] = [None] * len(self.methods)
        readers = self._readers
        for j, method in enumerate(self.methods):
            if j not in self.gradient:  # reads the activations only: the same readers as this pass
                method._readers = readers
                per_method[j] = method.raw_maps(Pass(run.x, run.output, [detached(a) for a in run.activations],
                                                     run.extra), targets)
        if self.gradient:
            stacked = super().raw_maps(run, targets)  # one backward per target; combine stacks the methods
            for g, j in enumerate(self.gradient):
                per_method[j] = [[layer[:, g] for layer in per_target] for per_target in stacked]
        return [[torch.stack([per_method[j][t][i] for j in range(len(self.methods))], dim=1)
                 for i in range(len(per_target))] for t, per_target in enumerate(per_method[0])]

    def _output(self, x, raws, classes, logits, normalize, ranked) -> list[CAMOutput]:
        return [method._output(x, [[layer[:, j] for layer in per_target] for per_target in raws], classes, logits,
                               normalize, ranked)
                for j, method in enumerate(self.methods)]

"""Run a model from one layer's output onward (torch.fx), for methods that perturb that output."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn


class _Tracer(fx.Tracer):
    """Keeps the target layer as one call, whatever it contains, and what timm marks untraceable."""

    def __init__(self, layer: str):
        leaves, functions = _timm_notrace()
        super().__init__(autowrap_functions=tuple(functions))
        self.layer, self.leaves = layer, tuple(leaves)

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (qualified_name == self.layer or isinstance(module, self.leaves)
                or super().is_leaf_module(module, qualified_name))


def _timm_notrace() -> tuple[list, list]:
    """timm's registry of modules and functions that torch.fx must not trace into (padding, etc.)."""
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # pragma: no cover - timm is a dependency, but any model works without it
        return [], []
    return list(get_notrace_modules()), list(get_notrace_functions())


class LayerSuffix:
    """The part of ``model`` after ``layer``: what it needs from a full pass, and a way to run it.

    ``run(x)`` is the full forward pass that also keeps the values the suffix needs (the layer's
    output and any tensor that skips past it); ``resume(rows, activations)`` runs only the nodes that
    depend on the layer, for N copies of samples ``rows`` whose layer output is ``activations``.
    Raises on models torch.fx cannot trace (data-dependent control flow); callers fall back to the
    whole model.
    """

    def __init__(self, model: nn.Module, layer: str):
        graph = _Tracer(layer).trace(model)
        self.module = fx.GraphModule(model, graph)
        nodes = list(graph.nodes)
        calls = [n for n in nodes if n.op == "call_module" and n.target == layer]
        if not calls:
            raise ValueError(f"layer {layer!r} is not called in the traced graph")
        self.node = calls[-1]
        after, batched = {self.node}, {n for n in nodes if n.op == "placeholder"}
        for node in nodes:
            inputs = set(node.all_input_nodes)
            if inputs & after:
                after.add(node)
            if inputs & batched:
                batched.add(node)
        self.suffix = [n for n in nodes if n in after and n is not self.node]
        self.needed = {a for n in self.suffix for a in n.all_input_nodes if a not in after}
        self.batched = batched
        self.saved: dict[fx.Node, Any] = {}

    def run(self, x: torch.Tensor) -> Any:
        """The model's output on ``x``; remembers the values the suffix needs."""
        keep = self.needed
        saved = self.saved = {}
        self.batch = x.shape[0]

        class Recorder(fx.Interpreter):
            def run_node(self, node):
                value = super().run_node(node)
                if node in keep:  # a copy: the rest of this pass may change it in place
                    saved[node] = value.clone() if isinstance(value, torch.Tensor) else value
                return value

        return Recorder(self.module).run(x)

    def resume(self, rows: torch.Tensor, activations: torch.Tensor) -> Any:
        """The model's output when the layer's output is ``activations`` (N, ...) for samples ``rows``."""
        interpreter = fx.Interpreter(self.module, garbage_collect_values=False)
        env = {node: self._select(node, value, rows) for node, value in self.saved.items()}
        env[self.node] = activations
        interpreter.env = env
        for node in self.suffix:
            env[node] = interpreter.run_node(node)
            if node.op == "output":
                return env[node]
        raise RuntimeError("the traced graph has no output node")

    def _select(self, node: fx.Node, value: Any, rows: torch.Tensor) -> Any:
        """Per-sample values are taken for each copy: those computed from the input with the batch as
        their first dimension (the caller checks the result against the full pass)."""
        per_sample = (node in self.batched and isinstance(value, torch.Tensor) and value.dim() > 0
                      and value.shape[0] == self.batch)
        return value[rows] if per_sample else value

    def clear(self) -> None:
        self.saved = {}

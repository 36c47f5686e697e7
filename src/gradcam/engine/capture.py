"""What the engine does to a model for one call, and undoes after it, also after an exception: eval
mode, temporary forward hooks, and the capture of the target layers' activations (recording no graph
before them)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from gradcam.errors import LayerError


def module_device(module: nn.Module) -> torch.device:
    """Where a module's parameters (else buffers) are; the CPU for a module that holds neither."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode for the block; every module's own train/eval flag restored after."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


@contextlib.contextmanager
def temporary_hooks(pairs: Iterable[tuple[nn.Module, Callable]]):
    """Forward hooks ``(module, hook)`` registered for the block and removed after it (also when
    registering one of them fails)."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield handles
    finally:
        for handle in handles:
            handle.remove()


class ActivationCapture:
    """Forward hooks on the target layers for one call; removed on exit, also after an exception.

    Run the model under ``torch.no_grad()`` inside this context: the part of the network before the
    first target layer then runs like inference. When the first target layer finishes, its hook turns
    gradient recording on and makes its output a leaf that requires grad, so the graph holds only the
    path from the target layers to the scores. Each hook hands the network a *clone* of what it
    captured, so a later in-place operation (DenseNet's ReLU, ResNet's ``relu_``) cannot change the
    activations the map is computed from. With ``record_graph=False`` no graph is recorded at all.
    """

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], record_graph: bool = True, structured: bool = False):
        self.layers = list(layers)
        self.record_graph = record_graph
        self.structured = structured  # a layer may return a dict, tuple or list of tensors (read by reshape=)
        self.activations: list[Any] = [None] * len(self.layers)
        self._hooks = temporary_hooks((module, self._hook(i)) for i, (_, module) in enumerate(self.layers))

    def __enter__(self) -> "ActivationCapture":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self._hooks.__exit__(*exc)
        return False

    def _hook(self, index: int):
        name = self.layers[index][0]

        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                self.activations[index] = self._leaf(output)
                return self.activations[index].clone()
            leaves, spec = tree_flatten(output)
            if not self.structured or not any(isinstance(t, torch.Tensor) for t in leaves):
                raise LayerError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; pass reshape= a callable that "
                    "makes one (B, C, *spatial) map of it (as for a detector's FPN backbone), or choose another "
                    "layer (`gradcam layers` lists them)"
                )
            leaves = [self._leaf(t) if isinstance(t, torch.Tensor) else t for t in leaves]
            self.activations[index] = tree_unflatten(leaves, spec)
            return tree_unflatten([t.clone() if isinstance(t, torch.Tensor) else t for t in leaves], spec)

        return hook

    def _leaf(self, output: torch.Tensor) -> torch.Tensor:
        """The captured tensor: a leaf of the graph that requires grad when none reaches it yet (the first
        target layer, after a part that ran without a graph, or one on a branch no earlier target feeds)."""
        if self.record_graph and not output.requires_grad:
            torch.set_grad_enabled(True)
            return output.detach().requires_grad_(True)
        return output

    def checked(self) -> list[Any]:
        """The captured activations; an error naming any target layer that did not run."""
        for (name, _), captured in zip(self.layers, self.activations):
            if captured is None:
                raise LayerError(f"layer {name!r} did not run in the model's forward pass")
        return self.activations  # type: ignore[return-value]


def tensors_of(value: Any) -> list[torch.Tensor]:
    """The tensors in a layer's output: the tensor itself, or those of a dict, tuple or list."""
    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def detached(value: Any) -> Any:
    """A layer's output (a tensor or a structure of them) detached from the graph."""
    return tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, value)


def like(value: Any, tensors: Sequence[torch.Tensor | None]) -> Any:
    """``tensors`` (one per tensor of ``value``, in order; None for a zero gradient) in ``value``'s structure."""
    leaves, spec = tree_flatten(value)
    given = iter(tensors)
    rebuilt = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            tensor = next(given)
            rebuilt.append(torch.zeros_like(leaf) if tensor is None else tensor)
        else:
            rebuilt.append(leaf)
    return tree_unflatten(rebuilt, spec)

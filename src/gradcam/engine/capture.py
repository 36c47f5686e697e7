"""What the engine does to a model for one call, and undoes after it, also after an exception: eval
mode, temporary forward hooks, and the capture of the target layers' activations (recording no graph
before them)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

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

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], record_graph: bool = True):
        self.layers = list(layers)
        self.record_graph = record_graph
        self.activations: list[torch.Tensor | None] = [None] * len(self.layers)
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
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer"
                )
            if self.record_graph and not output.requires_grad:
                # the first target layer (the part before it ran without a graph), or one on a branch
                # that no earlier target layer feeds: its output becomes a leaf of the graph
                torch.set_grad_enabled(True)
                output = output.detach().requires_grad_(True)
            self.activations[index] = output
            return output.clone()

        return hook

    def checked(self) -> list[torch.Tensor]:
        """The captured activations; an error naming any target layer that did not run."""
        for (name, _), captured in zip(self.layers, self.activations):
            if captured is None:
                raise LayerError(f"layer {name!r} did not run in the model's forward pass")
        return self.activations  # type: ignore[return-value]

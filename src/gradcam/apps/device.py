"""One device policy for every entry point (Explainer, sweep, compare, the web app, train): where a model
runs, moving a given module there, and how many images a batch holds when nobody said."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradcam.engine.capture import module_device
from gradcam.errors import OptionError


def choose_device(device: Any = None, module: nn.Module | None = None) -> torch.device:
    """The device to explain on.

    ``device`` given: that device (checked: an unknown name or an absent CUDA device is an OptionError).
    Not given: where ``module`` already is, or for a model still to be loaded, CUDA when available,
    else the CPU.
    """
    if device is None or device == "":
        if module is not None:
            return module_device(module)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(f"device: {device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device: {device!r} asked for, but CUDA is not available on this machine")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise OptionError(f"device: {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif chosen.type not in ("cpu", "mps", "xpu"):
        raise OptionError(f"device: {device!r} is not supported; use 'cpu' or 'cuda'")
    return chosen


BATCH_SIZES = {"cpu": 16, "cuda": 64}  # images per forward pass by default: a CPU's threads vs a GPU kept fed


def batch_size_for(device: Any) -> int:
    """The batch size a folder job takes when none is given: 16 images on a CPU (about as fast per image as
    any larger batch, and the pictures start coming early), 64 on a GPU (small batches leave it waiting on
    the launch of each kernel)."""
    return BATCH_SIZES["cuda" if torch.device(device or "cpu").type == "cuda" else "cpu"]


def place(module: nn.Module, device: Any = None) -> tuple[nn.Module, torch.device]:
    """``module`` on the chosen device (moved there when ``device`` names another) and that device."""
    chosen = choose_device(device, module)
    if not _same(module_device(module), chosen):
        module.to(chosen)
    return module, chosen


def _same(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 (the current device) are the same place."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)

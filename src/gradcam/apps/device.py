"""One device policy for every entry point (Explainer, sweep, compare, the web app, train), and the
models loaded by name, cached per device and weights."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import nn

from gradcam.engine.capture import module_device
from gradcam.errors import OptionError
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.sources import load_model, weights_stamp


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


def bundle_on_device(model: Any, weights: Any = None, device: Any = None) -> tuple[ModelBundle, torch.device]:
    """A model name, bundle or module as a bundle on the device the policy chooses (:mod:`.device`):
    a name is loaded there (cached); a given module is moved when ``device`` names another place."""
    if isinstance(model, (ModelBundle, nn.Module)):
        if weights is not None:
            raise OptionError("weights= is for a model given by name; load them into your module with "
                              "module.load_state_dict(...) first")
        bundle = model if isinstance(model, ModelBundle) else ModelBundle(
            module=model, preprocess=Preprocess(), labels=None, name=type(model).__name__)
        _, chosen = place(bundle.module, device)
        return bundle, chosen
    if not isinstance(model, (str, os.PathLike)):
        raise OptionError(f"model must be a name, a ModelBundle or a torch.nn.Module, got {type(model).__name__}")
    chosen = choose_device(device)
    name, weights = os.fspath(model), None if weights is None else os.fspath(weights)
    return _cached_bundle(name, weights, str(chosen), weights_stamp(name, weights)), chosen


@functools.lru_cache(maxsize=4)
def _cached_bundle(name: str, weights: str | None, device: str, stamp: tuple) -> ModelBundle:
    """Models loaded by name, kept per (name, weights, device) and the weights files' size and time,
    so that weights rewritten in place (a retrained checkpoint) are loaded again."""
    return load_model(name, weights, device=device)

"""The models the applications load by name, cached per device and weights (a retrained checkpoint rewritten
in place is loaded again), on the device the policy chooses (:mod:`.device`)."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import nn

from gradcam.apps.device import choose_device, place
from gradcam.errors import OptionError
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.sources import load_model, weights_stamp


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

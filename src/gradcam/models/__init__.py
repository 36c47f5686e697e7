"""Models: a bundle (module, preprocessing, class names, name), the registry of sources a model comes
from (bundled EfficientNet-Lite0, torchvision, ``timm/<name>``, a checkpoint folder, ``file.py:Class``,
``ultralytics/…``, and plugins), class names, weights and the checkpoint format.

The names are imported on first use (PEP 562): :mod:`.preprocess` alone imports no torch, so a process that
only decodes images (a Ray Data task) stays light."""

from __future__ import annotations

import importlib

_PUBLIC = {
    "ModelBundle": "gradcam.models.bundle", "Preprocess": "gradcam.models.preprocess",
    "ClipPreprocess": "gradcam.models.preprocess", "imagenet_labels": "gradcam.models.labels",
    "BUNDLED": "gradcam.models.sources", "list_models": "gradcam.models.sources",
    "list_sources": "gradcam.models.sources", "load_model": "gradcam.models.sources",
    "register_source": "gradcam.models.sources",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once
        return value
    try:  # a submodule, as an attribute (``gradcam.models.sources``), as an eager package gave it
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'gradcam.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

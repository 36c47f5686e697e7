"""gradcam: Grad-CAM exactly as the paper defines it, on any PyTorch model.

The public names are imported on first use (PEP 562), so ``import gradcam`` costs little more than
``import torch``, and ``import gradcam.engine`` loads no image, plotting or model-zoo library."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

from gradcam.errors import (
    DataError,
    GradCAMError,
    ImageError,
    LayerError,
    ModelError,
    OptionError,
    TargetError,
    VisualizeError,
)

try:
    __version__ = version("gradcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_METHODS = (  # every method class, as gradcam.engine.methods exports it
    "CAMMethod", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM", "ScoreCAM", "AblationCAM",
    "EigenCAM", "CAM", "GuidedBackprop", "GuidedGradCAM", "EigenGradCAM", "KPCACAM", "FEM", "ShapleyCAM",
    "FinerCAM", "SSCAM", "ISCAM", "RISE", "ReciproCAM", "FullGrad", "LeGrad",
)
_PUBLIC = dict.fromkeys(_METHODS, "gradcam.engine.methods") | {  # name -> the module that defines it
    "DeepFeatureFactorization": "gradcam.engine.methods.dff", "Concepts": "gradcam.engine.methods.dff",
    "CAMOutput": "gradcam.engine.output",
    "create_method": "gradcam.engine.methods", "list_methods": "gradcam.engine.methods",
    "method_info": "gradcam.engine.methods", "register_method": "gradcam.engine.methods",
    "auto_layer": "gradcam.engine.layers", "candidate_layers": "gradcam.engine.layers",
    "resolve_layers": "gradcam.engine.layers",
    "ClassRegion": "gradcam.engine.targets", "Binary": "gradcam.engine.targets",
    "Regression": "gradcam.engine.targets", "Similarity": "gradcam.engine.targets",
    "Box": "gradcam.engine.targets", "detected_boxes": "gradcam.engine.targets",
    "Detections": "gradcam.engine.targets", "MultiLabel": "gradcam.engine.targets",
    "Confidence": "gradcam.metrics.faithfulness", "DeletionInsertion": "gradcam.metrics.faithfulness",
    "ParameterRandomisation": "gradcam.metrics.sanity",
    "pointing_game": "gradcam.metrics.localisation", "energy_inside": "gradcam.metrics.localisation",
    "audit": "gradcam.apps.analyses.audit", "Audit": "gradcam.apps.analyses.audit",
    "explain_clip": "gradcam.apps.media", "explain_volume": "gradcam.apps.media",
    "explain_signal": "gradcam.apps.media",
    "load_model": "gradcam.models.sources", "list_models": "gradcam.models.sources",
    "register_source": "gradcam.models.sources", "register_metric": "gradcam.metrics",
    "ModelBundle": "gradcam.models.bundle", "Preprocess": "gradcam.models.preprocess",
    "load_image": "gradcam.io.images",
    "explain": "gradcam.apps.explainer", "Explainer": "gradcam.apps.explainer",
    "Explanation": "gradcam.apps.explainer",
    "explain_folder": "gradcam.apps.pipeline.local", "FolderSummary": "gradcam.apps.pipeline.local",
    "compare": "gradcam.apps.analyses.compare", "Comparison": "gradcam.apps.analyses.compare",
    "sweep": "gradcam.apps.analyses.sweep", "Sweep": "gradcam.apps.analyses.sweep",
}
_ROOMS = {"engine", "io", "metrics", "models", "render", "apps", "web", "cli", "errors", "choices", "plugins"}

__all__ = sorted(_PUBLIC) + ["DataError", "GradCAMError", "ImageError", "LayerError", "ModelError", "OptionError",
                             "TargetError", "VisualizeError"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once
        return value
    if name in _ROOMS:
        return importlib.import_module(f"gradcam.{name}")
    raise AttributeError(f"module 'gradcam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | _ROOMS)

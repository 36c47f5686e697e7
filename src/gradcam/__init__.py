"""gradcam: Grad-CAM exactly as the paper defines it, on any PyTorch model."""

from importlib.metadata import PackageNotFoundError, version

from gradcam.errors import DataError, GradCAMError, ImageError, LayerError, ModelError, OptionError, TargetError, VisualizeError
from gradcam.render.images import load_image
from gradcam.engine.layers import auto_layer, candidate_layers, resolve_layers
from gradcam.engine.methods import CAMOutput, GradCAM, create_method, list_methods
from gradcam.models.bundle import ModelBundle
from gradcam.models.sources import list_models, load_model
from gradcam.apps.explainer import Explainer, Explanation, explain
from gradcam.apps.compare import Comparison, compare
from gradcam.apps.batch import FolderSummary, explain_folder
from gradcam.apps.sweep import Sweep, sweep

try:
    __version__ = version("gradcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "GradCAM", "CAMOutput", "create_method", "list_methods",
    "explain", "Explainer", "Explanation", "load_image",
    "explain_folder", "FolderSummary", "compare", "Comparison", "sweep", "Sweep",
    "load_model", "list_models", "ModelBundle",
    "auto_layer", "candidate_layers", "resolve_layers",
    "DataError", "GradCAMError", "ImageError", "LayerError", "ModelError", "OptionError", "TargetError", "VisualizeError",
]

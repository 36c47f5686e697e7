"""gradcam: Grad-CAM exactly as the paper defines it, on any PyTorch model."""

from importlib.metadata import PackageNotFoundError, version

from .errors import DataError, GradCAMError, ImageError, LayerError, ModelError, OptionError, TargetError, VisualizeError
from .io import load_image
from .layers import auto_layer, candidate_layers, resolve_layers
from .methods import CAMOutput, GradCAM, create_method, list_methods
from .models import ModelBundle, list_models, load_model
from .pipeline import Explainer, Explanation, explain
from .comparison import Comparison, compare
from .folder import FolderSummary, explain_folder
from .layer_sweep import Sweep, sweep

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

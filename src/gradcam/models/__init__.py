"""Models: a bundle (module, preprocessing, class names, name), the sources a model comes from (bundled
EfficientNet-Lite0, torchvision, ``timm/<name>``, a checkpoint folder, a local weights file), weights
and the checkpoint format."""

from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.sources import BUNDLED, imagenet_labels, list_models, load_model

__all__ = ["BUNDLED", "ModelBundle", "Preprocess", "imagenet_labels", "list_models", "load_model"]

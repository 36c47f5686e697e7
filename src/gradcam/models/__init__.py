"""Models: a bundle (module, preprocessing, class names, name), the registry of sources a model comes
from (bundled EfficientNet-Lite0, torchvision, ``timm/<name>``, a checkpoint folder, ``file.py:Class``,
``ultralytics/…``, and plugins), class names, weights and the checkpoint format."""

from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.labels import imagenet_labels
from gradcam.models.sources import BUNDLED, list_models, list_sources, load_model, register_source

__all__ = ["BUNDLED", "ModelBundle", "Preprocess", "imagenet_labels", "list_models", "list_sources", "load_model",
           "register_source"]

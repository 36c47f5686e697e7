"""Where models come from: one module per source, each registered in :mod:`.registry` (bundled
EfficientNet-Lite0, torchvision names, ``timm/<name>``, ``ultralytics/<file>``, a ``gradcam train`` folder,
your own ``file.py:Class``, ``.onnx`` and ``.keras`` files, ``keras/<name>``), and any a plugin registers
(entry-point group ``gradcam.sources``)."""

# The import order is the order in which the sources' claims are asked (ruff: I001 off here).
from gradcam.models.labels import imagenet_labels
from gradcam.models.sources.registry import (Source, find_source, list_models, list_sources, load_model,
                                             register_source, weights_files, weights_stamp)
from gradcam.models.sources import checkpoint_folder, factory, bundled, torchvision_models  # noqa: F401
from gradcam.models.sources import timm_models, ultralytics_models, onnx_files  # noqa: F401
from gradcam.models.sources import keras_files, keras_applications  # noqa: F401
from gradcam.models.sources.bundled import BUNDLED
from gradcam.models.sources.factory import is_factory

__all__ = ["BUNDLED", "Source", "find_source", "imagenet_labels", "is_factory", "list_models", "list_sources",
           "load_model", "register_source", "weights_files", "weights_stamp"]

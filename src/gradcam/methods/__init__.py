"""CAM methods: one small class per method, all sharing the lifecycle in :mod:`.base`."""

from .base import CAMMethod, CAMOutput
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .xgradcam import XGradCAM
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .scorecam import ScoreCAM
from .ablationcam import AblationCAM
from .eigencam import EigenCAM
from .cam import CAM
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .registry import (applicable_methods, create_method, describe_methods, get_method, list_methods, method_info,
                       method_options, register_method)

__all__ = [
    "CAMMethod", "CAMOutput", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM",
    "ScoreCAM", "AblationCAM", "EigenCAM", "CAM", "GuidedBackprop", "GuidedGradCAM",
    "applicable_methods", "create_method", "describe_methods", "get_method", "list_methods", "method_info",
    "method_options", "register_method",
]

"""CAM methods: one small class per method, all sharing the lifecycle in :mod:`.base`."""

from .base import CAMMethod, CAMOutput
from .gradcam import GradCAM
from .registry import create_method, describe_methods, get_method, list_methods, register_method

__all__ = [
    "CAMMethod", "CAMOutput", "GradCAM",
    "create_method", "describe_methods", "get_method", "list_methods", "register_method",
]

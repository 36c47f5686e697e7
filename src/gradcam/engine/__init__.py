"""The engine: torch only, tensors in and tensors out (no images, files, pictures or model names).

capture (eval mode, hooks, activations) · layers (automatic / named / several / one per stage) · targets ·
functional (the maths shared by methods) · suffix (the traced tail of a network) · precision
(memory format, autocast) · output ·
methods/ (registry and one file per method)."""

from gradcam.engine.layers import auto_layer, candidate_layers, parse_layers, resolve_layers
from gradcam.engine.methods import (
    CAMMethod,
    GradCAM,
    applicable_methods,
    create_method,
    describe_methods,
    get_method,
    list_methods,
    method_info,
    method_options,
    register_method,
)
from gradcam.engine.output import CAMOutput

__all__ = [
    "CAMMethod", "CAMOutput", "GradCAM", "applicable_methods", "auto_layer", "candidate_layers", "create_method",
    "describe_methods", "get_method", "list_methods", "method_info", "method_options", "parse_layers",
    "register_method", "resolve_layers",
]

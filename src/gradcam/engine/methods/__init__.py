"""CAM methods: one small class per method, all sharing the lifecycle in :mod:`.base`."""

# The import order is the order in which `gradcam methods` and --method all list them (ruff: I001 off here).

from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.output import CAMOutput
from gradcam.engine.methods.gradcam import GradCAM
from gradcam.engine.methods.gradcampp import GradCAMPlusPlus
from gradcam.engine.methods.xgradcam import XGradCAM
from gradcam.engine.methods.hirescam import HiResCAM
from gradcam.engine.methods.layercam import LayerCAM
from gradcam.engine.methods.scorecam import ScoreCAM
from gradcam.engine.methods.ablationcam import AblationCAM
from gradcam.engine.methods.eigencam import EigenCAM
from gradcam.engine.methods.cam import CAM
from gradcam.engine.methods.guided_backprop import GuidedBackprop
from gradcam.engine.methods.guided_gradcam import GuidedGradCAM
from gradcam.engine.methods.eigengradcam import EigenGradCAM
from gradcam.engine.methods.kpcacam import KPCACAM
from gradcam.engine.methods.fem import FEM
from gradcam.engine.methods.shapleycam import ShapleyCAM
from gradcam.engine.methods.finercam import FinerCAM
from gradcam.engine.methods.sscam import SSCAM
from gradcam.engine.methods.iscam import ISCAM
from gradcam.engine.methods.rise import RISE
from gradcam.engine.methods.reciprocam import ReciproCAM
from gradcam.engine.methods.fullgrad import FullGrad
from gradcam.engine.methods.legrad import LeGrad
from gradcam.engine.methods.registry import (applicable_methods, create_method, describe_methods, get_method,
                       list_methods, method_info,
                       method_options, register_method)

__all__ = [
    "CAMMethod", "CAMOutput", "GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM",
    "ScoreCAM", "AblationCAM", "EigenCAM", "CAM", "GuidedBackprop", "GuidedGradCAM",
    "EigenGradCAM", "KPCACAM", "FEM", "ShapleyCAM", "FinerCAM",
    "SSCAM", "ISCAM", "RISE", "ReciproCAM",
    "FullGrad", "LeGrad",
    "applicable_methods", "create_method", "describe_methods", "get_method", "list_methods", "method_info",
    "method_options", "register_method",
]

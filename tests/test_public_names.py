"""The lazy public names of ``gradcam``: every method class, Deep Feature Factorization, and each name in
``__all__`` resolving to what its module defines."""

from __future__ import annotations

import inspect

import gradcam
import gradcam.engine.methods as methods
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.dff import Concepts, DeepFeatureFactorization


def test_every_method_class_and_dff_are_public_names():
    classes = {name for name in methods.__all__
               if inspect.isclass(getattr(methods, name)) and issubclass(getattr(methods, name), CAMMethod)}
    assert len(classes) >= 23 and {"EigenGradCAM", "KPCACAM", "FEM", "ShapleyCAM", "FinerCAM", "SSCAM", "ISCAM",
                                    "RISE", "ReciproCAM", "FullGrad", "LeGrad"} <= classes
    for name in classes:
        assert name in gradcam.__all__ and getattr(gradcam, name) is getattr(methods, name), name
    assert gradcam.DeepFeatureFactorization is DeepFeatureFactorization and gradcam.Concepts is Concepts
    assert {"DeepFeatureFactorization", "Concepts"} <= set(gradcam.__all__) <= set(dir(gradcam))


def test_every_name_in_all_resolves():
    for name in gradcam.__all__:
        assert getattr(gradcam, name) is not None, name

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


def test_the_models_package_gives_its_names_and_submodules_on_first_use():
    """gradcam.models imports nothing until asked (its preprocessing alone imports no torch), then gives its
    public names and its submodules as attributes, as an eager package would; anything else is an AttributeError."""
    import subprocess
    import sys

    code = ("import sys, gradcam.models as m\n"
            "from gradcam.models import Preprocess\n"
            "assert 'torch' not in sys.modules, 'gradcam.models imported torch for Preprocess'\n"
            "assert callable(m.sources.list_sources) and m.bundle.ModelBundle is m.ModelBundle\n"
            "try:\n    m.no_such_name\nexcept AttributeError:\n    print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]

"""Your own network: ``my_models.py:Net3D`` or ``package.module:build``, a class or function called with no
arguments (random weights unless ``weights=`` loads its state dict). The file's code runs, as
``python file.py`` would run it."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from torch import nn

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.labels import class_names
from gradcam.models.sources.registry import register_source
from gradcam.models.weights import load_state, num_outputs, read_state_dict, short_error


def is_factory(name: str) -> bool:
    """Whether ``name`` names your own model's class or function: ``my_models.py:Net3D`` or
    ``package.module:build``."""
    module, sep, attr = str(name).rpartition(":")
    return bool(sep and module and attr.isidentifier() and (module.endswith(".py") or
                                                            all(p.isidentifier() for p in module.split("."))))


@register_source(name="factory", claims=is_factory,
                 description="file.py:Class or package.module:build: your own network (weights from --weights)")
def load(name: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    model = _from_factory(name)
    if weights is not None:
        model = load_state(model, lambda n=None: _from_factory(name), read_state_dict(weights), weights, name)
    return ModelBundle(module=model.eval(), preprocess=Preprocess(), labels=class_names(num_outputs(model)), name=name)


def _from_factory(name: str) -> nn.Module:
    module_name, _, attr = name.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ModelError(f"model file not found: {module_name}")
            spec = importlib.util.spec_from_file_location(f"gradcam_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: any failure in one line
        raise ModelError(f"could not load {name!r} ({short_error(e)})") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model

"""A Keras 3 model on Keras's PyTorch backend, as the engine takes a network. Keras's layers are then torch
modules (a forward hook on one fires with its NHWC output), so the same engine explains it: one forward,
autograd on the layer's output only, every method. Keras registers none of them under its names, so the
wrapper does (nested models as folders: ``base.conv5_block3_out``)."""

from __future__ import annotations

import os

from torch import nn

from gradcam.errors import ModelError


def import_keras():
    """Keras 3 on the PyTorch backend (the backend is chosen before Keras is first imported); a ModelError
    saying what to install, or that Keras already runs another backend in this process."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise ModelError("Keras models need their extra: pip install 'gradcam[keras]'") from None
    if not str(getattr(keras, "__version__", "0")).startswith("3"):
        raise ModelError(f"Keras {keras.__version__} is installed; gradcam needs Keras 3 (pip install 'keras>=3')")
    if keras.backend.backend() != "torch":
        raise ModelError(f"Keras runs on its {keras.backend.backend()} backend in this process; gradcam needs the "
                         "PyTorch one: set KERAS_BACKEND=torch before Keras is first imported")
    return keras


class KerasNetwork(nn.Module):
    """``model`` taking the engine's (B, 3, H, W) RGB input — turned into the model's (B, H, W, C), BGR first
    where its preprocessing wants (``bgr``) — and giving the class scores before a final softmax: the paper's
    y^c, as Keras's own Grad-CAM example gets them (``model.layers[-1].activation = None``). The softmax is
    taken off this copy of the model only."""

    channels_last_activations = True  # Keras's maps are (B, h, w, C): read them so (engine.layouts)

    def __init__(self, model, *, bgr: bool = False):
        super().__init__()
        keras = import_keras()
        if not isinstance(model, nn.Module):
            raise ModelError(f"{type(model).__name__} is not a Keras model on the PyTorch backend")
        last = model.layers[-1] if model.layers else None
        self.softmax_removed = getattr(getattr(last, "activation", None), "__name__", "") == "softmax"
        if self.softmax_removed:
            last.activation = keras.activations.linear
        self.bgr = bgr
        _register(self, model, keras)
        object.__setattr__(self, "keras_model", model)  # not a submodule: its layers are, under their names

    def forward(self, x):
        if self.bgr:
            x = x.flip(1)
        return self.keras_model(x.permute(0, 2, 3, 1), training=False)


def _register(parent: nn.Module, model, keras) -> None:
    """``model``'s layers as submodules of ``parent`` under their Keras names; a nested model's under its own."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            folder = nn.Module()
            _register(folder, layer, keras)
            parent.add_module(layer.name, folder)
        else:
            parent.add_module(layer.name, layer)

"""Keras 3 model files (``my.keras``, and legacy ``.h5`` where Keras 3 loads it) on Keras's PyTorch backend
(extra ``gradcam[keras]``): layers named as Keras names them, class names from a ``labels.txt`` beside the file.

A model whose first layer rescales its input (``Rescaling``, as Keras's tutorials build them) takes pixels in
[0, 255]: that is read from the file. Otherwise the input's mean and std come from ``mean=``/``std=``
(``--mean``, ``--std``) or are guessed (ImageNet's) and said in one line; the input size is the model's."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle
from gradcam.models.file_models import file_labels, file_preprocess
from gradcam.models.keras_network import KerasNetwork, import_keras
from gradcam.models.sources.registry import register_source

PIXELS = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # mean, std that give a model pixels in [0, 255]


@register_source(name="keras", suffixes=(".keras", ".h5"), files=lambda spec, weights: [Path(spec)],
                 description="FILE.keras (or a Keras 3 .h5): a Keras model, PyTorch backend (extra gradcam[keras])")
def load(spec: str, *, weights=None, pretrained: bool = True, input_size: int | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         channels_last: bool | None = None) -> ModelBundle:
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"model file not found: {spec}")
    if channels_last is False:
        raise ModelError(f"{spec}: a Keras model takes channels-last images; drop --no-channels-last")
    keras = import_keras()
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line naming it
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ModelError(f"{spec}: Keras cannot load it as a model ({type(exc).__name__}: {first})") from None
    if weights is not None:
        try:
            model.load_weights(str(weights))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{weights}: Keras cannot load these weights into {spec} ({exc})") from None
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3):
        raise ModelError(f"{spec}: takes input {model.input_shape}; an image model takes (None, H, W, 3)")
    if shape[-1] == 1:
        raise ModelError(f"{spec}: takes one-channel images, which gradcam does not feed Keras models yet")
    size = shape[1] if shape[1] is not None and shape[1] == shape[2] else None
    if mean is None and std is None and _rescales(model, keras):
        mean, std = PIXELS
    network = KerasNetwork(model)
    outputs = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    return ModelBundle(network.eval(), file_preprocess(spec, size, mean, std, input_size), file_labels(path, outputs),
                       path.name)


def _rescales(model, keras) -> bool:
    """Whether the model's first layer after its input rescales pixels itself (``Rescaling``)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return bool(layers) and isinstance(layers[0], keras.layers.Rescaling)

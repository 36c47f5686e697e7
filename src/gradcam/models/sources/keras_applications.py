"""Keras applications by name (``keras/xception``, ``keras/resnet50``, ``keras/vgg19``, …) on Keras's PyTorch
backend (extra ``gradcam[keras]``), each with its own preprocessing — ``keras.applications.<family>
.preprocess_input``'s, as mean and std of pixels in [0, 1] (caffe: BGR, minus ImageNet's mean in [0, 255];
tf: [-1, 1]; torch: ImageNet's mean and std; EfficientNet and ConvNeXt rescale inside: [0, 255]) — and
ImageNet's class names. Weights: ImageNet's (Keras downloads them; offline, one line that says how to pass
a local file), a local ``.h5``/``.weights.h5`` file (``weights=``), or none (``pretrained=False``)."""

from __future__ import annotations

import contextlib
import random

import numpy as np

from gradcam.errors import ModelError, suggest
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.keras_network import KerasNetwork, import_keras
from gradcam.models.labels import imagenet_labels
from gradcam.models.sources.registry import register_source
from gradcam.models.weights import download_errors, short_error

_CAFFE = ((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3, True)  # mean, std (RGB), BGR
_TF = ((0.5,) * 3, (0.5,) * 3, False)
_TORCH = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False)
_PIXELS = ((0.0,) * 3, (1 / 255,) * 3, False)

APPLICATIONS = {  # our name: (keras.applications function, input size, preprocessing)
    "xception": ("Xception", 299, _TF), "vgg16": ("VGG16", 224, _CAFFE), "vgg19": ("VGG19", 224, _CAFFE),
    "resnet50": ("ResNet50", 224, _CAFFE), "resnet101": ("ResNet101", 224, _CAFFE),
    "resnet152": ("ResNet152", 224, _CAFFE), "resnet50v2": ("ResNet50V2", 224, _TF),
    "resnet101v2": ("ResNet101V2", 224, _TF), "resnet152v2": ("ResNet152V2", 224, _TF),
    "inceptionv3": ("InceptionV3", 299, _TF), "inceptionresnetv2": ("InceptionResNetV2", 299, _TF),
    "mobilenet": ("MobileNet", 224, _TF), "mobilenetv2": ("MobileNetV2", 224, _TF),
    "densenet121": ("DenseNet121", 224, _TORCH), "densenet169": ("DenseNet169", 224, _TORCH),
    "densenet201": ("DenseNet201", 224, _TORCH), "nasnetmobile": ("NASNetMobile", 224, _TF),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", size, _PIXELS)
       for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    "convnext_tiny": ("ConvNeXtTiny", 224, _PIXELS), "convnext_small": ("ConvNeXtSmall", 224, _PIXELS),
}


def _names() -> list[str]:
    return [f"keras/{n}" for n in APPLICATIONS]


@register_source("keras", name="keras-applications", names=_names, groups=lambda: {"classification": _names()},
                 description="keras/<name>: a Keras application with its own preprocessing (extra gradcam[keras])")
def load(name: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    key = name.lower()
    if key not in APPLICATIONS:
        raise ModelError(f"unknown Keras application {name!r}.{suggest(key, APPLICATIONS)} Known: "
                         + ", ".join(f"keras/{n}" for n in APPLICATIONS))
    function, size, (mean, std, bgr) = APPLICATIONS[key]
    keras = import_keras()
    source = str(weights) if weights is not None else "imagenet" if pretrained else None
    try:
        with _seeded(keras, source is None):
            model = getattr(keras.applications, function)(weights=source, input_shape=(size, size, 3))
    except Exception as exc:  # noqa: BLE001 - Keras's get_file raises a bare Exception when a download fails
        if source == "imagenet" and (isinstance(exc, download_errors()) or "URL fetch failure" in str(exc)):
            raise ModelError(f"could not download the ImageNet weights of keras/{name} ({short_error(exc)}); "
                             f"pass a local .h5 file with weights=PATH / --weights PATH, or use keras/{name}:random"
                             ) from None
        raise ModelError(f"keras/{name}: {short_error(exc)}") from None
    return ModelBundle(KerasNetwork(model, bgr=bgr).eval(), Preprocess(size, mean, std, "bilinear"),
                       imagenet_labels(), f"keras/{name}")


@contextlib.contextmanager
def _seeded(keras, seeded: bool):
    """Keras's random initial weights drawn from seed 0, and the caller's Python and NumPy random states
    (which ``keras.utils.set_random_seed`` also seeds) left as they were."""
    if not seeded:
        yield
        return
    states = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(0)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])

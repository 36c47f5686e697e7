"""Find the target layer: automatically (one probe forward), by dotted name, by module, or several."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from gradcam.engine.capture import eval_mode, is_feature_map, temporary_hooks
from gradcam.engine.layouts import transformer_layer
from gradcam.errors import LayerError, suggest

LayerSpec = Union[None, str, nn.Module, Sequence[Union[str, nn.Module]]]

_POOLING = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)
_AUTO_CACHE: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LayerInfo:
    """A module that produced a 4-D feature map during the probe forward pass."""

    name: str
    shape: tuple  # output shape for a batch of one
    calls: int  # times the module ran in one forward pass
    pooling: bool
    input_size: tuple | None = None  # (H, W) of the probe input

    @property
    def tokens(self) -> bool:
        """A (B, N, C) sequence, as transformer blocks give: not a map the engine can read."""
        return len(self.shape) == 3 and self.shape[1] > 1

    @property
    def spatial(self) -> bool:
        """A (B, C, h, w) map of the input (:func:`.capture.is_feature_map`)."""
        if self.input_size is None:
            return len(self.shape) == 4
        return is_feature_map(self.shape, self.input_size)

    @property
    def usable(self) -> bool:
        """Can be chosen automatically: a real spatial map of the input, produced once, not pooling."""
        return self.spatial and self.shape[2] * self.shape[3] > 1 and self.calls == 1 and not self.pooling


def probe_input(model: nn.Module, size: int = 224) -> torch.Tensor:
    """A zero image (1, C, size, size) on the model's device, C from its first convolution."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    channels = first.in_channels if first is not None else 3
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, channels, size, size, device=device, dtype=dtype)


def candidate_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every module whose output is a 4-D tensor, in the order they finish, from one probe forward.

    The probe runs in eval mode under no_grad on one sample (``x[:1]`` or a zero image), and the
    model's modes are restored afterwards.
    """
    return [info for info in _probe(model, x) if len(info.shape) == 4]


def _probe(model: nn.Module, x: torch.Tensor | None) -> list[LayerInfo]:
    """Every module whose output is a 3-D (token sequence) or 4-D tensor, in the order they finish."""
    x = probe_input(model) if x is None else x[:1]
    seen: dict[str, list] = {}

    def record(name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() in (3, 4):
                entry = seen.pop(name, [tuple(output.shape), 0, isinstance(module, _POOLING)])
                entry[0], entry[1] = tuple(output.shape), entry[1] + 1
                seen[name] = entry  # re-insert: dict order = order of the last completion

        return hook

    with eval_mode(model), temporary_hooks((m, record(name)) for name, m in model.named_modules() if name), \
            torch.no_grad():
        model(x)
    size = tuple(x.shape[-2:])
    return [LayerInfo(name, shape, calls, pooling, size) for name, (shape, calls, pooling) in seen.items()]


def auto_layer(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """Name of the last module whose output is a spatial feature map before the network pools it away.

    Found once per model by a probe forward pass and cached.
    """
    if model in _AUTO_CACHE:
        return _AUTO_CACHE[model]
    found = _probe(model, x)
    usable = [i for i, info in enumerate(found) if info.usable]
    # After the last feature map, the network must not go on in a layout the engine cannot read (token
    # sequences, channels-last maps): there, the "last map before pooling" is not the network's last
    # spatial representation (a ViT's patch embedding, a Swin attention matrix), and a map from it misleads.
    later = [info for info in found[usable[-1] + 1 if usable else 0:]
             if info.tokens or (len(info.shape) == 4 and not info.spatial and info.shape[1] * info.shape[2] > 1)]
    if later and transformer_layer(model) is not None:  # a vision transformer: its tokens are read as a map
        _AUTO_CACHE[model] = transformer_layer(model)
        return _AUTO_CACHE[model]
    if not usable or later:
        example = ", ".join(f"{info.name!r} {info.shape}" for info in later[-2:])
        raise LayerError(
            f"{type(model).__name__}: no layer can be chosen automatically: "
            + (f"after its last (B, C, h, w) feature map it goes on in token or channels-last layouts "
               f"({example}), which the engine does not read yet" if later else
               "it produces no (B, C, h, w) feature map of its input")
            + "; pass target_layer= the name of a convolutional layer whose output is (B, C, h, w)"
        )
    usable = [found[i] for i in usable]
    _AUTO_CACHE[model] = usable[-1].name
    return usable[-1].name


def resolve_layers(
    model: nn.Module, spec: LayerSpec = None, x: torch.Tensor | None = None
) -> list[tuple[str, nn.Module]]:
    """(name, module) of each target layer: None = automatic; "a.b.c"; a module; or a list of these."""
    if spec is None:
        spec = [auto_layer(model, x)]
    elif isinstance(spec, (str, nn.Module)):
        spec = [spec]
    elif not isinstance(spec, (list, tuple)):
        raise LayerError(f"target layer {spec!r} must be a name, a module, a list of them or None")
    elif not spec:
        raise LayerError("target_layer is an empty list; pass at least one layer or None")
    names = {module: name for name, module in model.named_modules()}
    resolved = []
    for item in spec:
        if isinstance(item, nn.Module):
            if item not in names or item is model:
                raise LayerError(
                    f"target layer {type(item).__name__} is not a submodule of {type(model).__name__}"
                )
            resolved.append((names[item], item))
        elif isinstance(item, str):
            resolved.append((item, _get_submodule(model, item)))
        else:
            raise LayerError(f"target layer {item!r} must be a name, a module or None")
    return resolved


def parse_layers(text: str | None) -> str | list[str] | None:
    """A layer option as text (CLI ``--layer``, the web form): "" -> None (automatic), "a" -> "a",
    "a,b" -> ["a", "b"]."""
    if text is None or not str(text).strip():
        return None
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise LayerError(f"layer {text!r} names no layer")
    return names[0] if len(names) == 1 else names


def _get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if module is None or module is model:
        names = [n for n, _ in model.named_modules() if n]
        raise LayerError(
            f"{type(model).__name__} has no layer {name!r}.{suggest(name, names)} "
            "(`gradcam layers --model NAME` lists them)"
        )
    return module

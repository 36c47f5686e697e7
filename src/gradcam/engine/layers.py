"""Find the target layer: automatically (one probe forward), by dotted name, by module, or several."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch
from torch import nn

from gradcam.engine.capture import detached, eval_mode, temporary_hooks
from gradcam.engine.layouts import (
    TOKENS,
    Layout,
    find_layout,
    is_feature_map,
    map_axes,
    pools_tokens,
    transformer_layer,
)
from gradcam.errors import LayerError, OptionError, suggest

LayerSpec = Union[None, str, nn.Module, Sequence[Union[str, nn.Module]]]

_POOLING = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)
_AUTO_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[str, str]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output the probe forward pass saw, and how the engine reads it."""

    name: str
    shape: tuple  # output shape for a batch of one
    calls: int  # times the module ran in one forward pass
    pooling: bool
    input_size: tuple | None = None  # spatial size of the probe input: (L,), (H, W) or (D, H, W)
    layout: Layout | None = None  # how the output reads as a map of the input (None: it does not)

    @property
    def tokens(self) -> bool:
        """A (B, N, C) sequence of an image or clip, as transformer blocks give (for a signal, a (B, C, l)
        output is a map)."""
        return len(self.shape) == 3 and self.shape[1] > 1 and len(self.input_size or (0, 0)) >= 2

    @property
    def spatial(self) -> bool:
        """A map of the input, channels-first or channels-last (:mod:`.layouts`); a transformer's
        tokens are read through the model's own layer (:func:`.layouts.transformer_layer`)."""
        return self.layout is not None and self.layout.kind != TOKENS

    @property
    def map_size(self) -> tuple:
        """The spatial size of the map the layer gives ((h, w) for an image); () when it gives none."""
        return tuple(self.layout.map_shape(self.shape)[2:]) if self.layout is not None else ()

    @property
    def usable(self) -> bool:
        """Can be chosen automatically: a real spatial map of the input, produced once, not pooling."""
        return self.spatial and math.prod(self.map_size) > 1 and self.calls == 1 and not self.pooling


def first_convolution(model: nn.Module) -> nn.modules.conv._ConvNd | None:
    """The model's first convolution module (Conv1d, Conv2d, Conv3d), which says what input it takes."""
    return next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def check_input_axes(model: nn.Module, x: torch.Tensor) -> None:
    """An OptionError when ``x`` has not as many spatial axes as the model's first convolution takes
    (an image without its batch axis would otherwise be read as a batch of signals)."""
    first = first_convolution(model)
    if first is not None and len(first.kernel_size) != x.dim() - 2:
        want = {1: "(B, C, L) signals", 2: "(B, C, H, W) images", 3: "(B, C, D, H, W) volumes or clips"}
        raise OptionError(f"input of shape {tuple(x.shape)} for a model whose first convolution is "
                          f"{type(first).__name__}, which takes {want[len(first.kernel_size)]}"
                          + ("; add the batch axis with x.unsqueeze(0)" if x.dim() == len(first.kernel_size) + 1
                             else ""))


def probe_input(model: nn.Module, size: int = 224) -> torch.Tensor:
    """A zero input on the model's device, its channels and number of spatial axes from its first
    convolution: (1, C, size, size) for images (and models without convolutions), (1, C, 4·size) for a
    Conv1d network, (1, C, 16, size/2, size/2) for a Conv3d network (a 16-frame clip, as video networks take)."""
    first = first_convolution(model)
    channels = first.in_channels if first is not None else 3
    spatial = {1: (4 * size,), 3: (16, size // 2, size // 2)}.get(
        len(first.kernel_size) if first is not None else 2, (size, size))
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, channels, *spatial, device=device, dtype=dtype)


def candidate_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every module whose output has as many axes as the input (a map, channels-first or -last, or
    not one of the input) or is a token sequence, in the order they finish, from one probe forward.

    The probe runs in eval mode under no_grad on one sample (``x[:1]`` or :func:`probe_input`), and
    the model's modes are restored afterwards.
    """
    return [info for info in _probe(model, x) if info.layout is not None or info.tokens
            or len(info.shape) == len(info.input_size) + 2]


def _probe(model: nn.Module, x: torch.Tensor | None) -> list[LayerInfo]:
    """Every module whose output is a tensor of 3 or more axes, in the order they finish."""
    x = probe_input(model) if x is None else x[:1]
    seen: dict[str, list] = {}

    def record(name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() >= 3:
                entry = seen.pop(name, [tuple(output.shape), 0, isinstance(module, _POOLING)])
                entry[0], entry[1] = tuple(output.shape), entry[1] + 1
                seen[name] = entry  # re-insert: dict order = order of the last completion

        return hook

    with eval_mode(model), temporary_hooks((m, record(name)) for name, m in model.named_modules() if name), \
            torch.no_grad():
        model(x)
    size = tuple(x.shape[2:])
    return [LayerInfo(name, shape, calls, pooling, size, find_layout(shape, size, 1, model, name))
            for name, (shape, calls, pooling) in seen.items()]


def auto_layer(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """Name of the last module whose output is a spatial feature map before the network pools it away.

    Found once per model by a probe forward pass and cached; :func:`auto_layer_reason` says why.
    """
    if model not in _AUTO_CACHE:
        _AUTO_CACHE[model] = _choose(model, x)
    return _AUTO_CACHE[model][0]


def auto_layer_reason(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """Why :func:`auto_layer` chose the layer it chose, in one line."""
    auto_layer(model, x)
    return _AUTO_CACHE[model][1]


def _choose(model: nn.Module, x: torch.Tensor | None) -> tuple[str, str]:
    """(layer, reason) of the automatic layer, or a LayerError that says why there is none."""
    found = _probe(model, x)
    usable = [i for i, info in enumerate(found) if info.usable]
    # After the last feature map, the network must not go on in a layout the engine cannot read (token
    # sequences, outputs that are no map of the input): there, the "last map before pooling" is not the
    # network's last spatial representation (a ViT's patch embedding), and a map from it misleads.
    later = [info for info in found[usable[-1] + 1 if usable else 0:]
             if info.tokens or (info.layout is None and len(info.shape) == len(info.input_size) + 2
                                and math.prod(info.shape[1:-1]) > 1)]
    if later and transformer_layer(model) is not None:  # a vision transformer: its tokens are read as a map
        if pools_tokens(model):
            return transformer_layer(model), ("a vision transformer that pools its patch tokens: its last block, "
                                               "whose tokens the head reads, on the patch grid")
        return transformer_layer(model), (
            "a vision transformer: its last block's first norm, whose patch tokens carry the class score's "
            "gradient (the last block's output patch tokens do not), read on the patch grid; the gradient "
            "reaches them through the class token's attention, which Grad-CAM's token-averaged weights lose "
            "and HiResCAM and LayerCAM keep (--method hirescam)")
    if not usable or later:
        example = ", ".join(f"{info.name!r} {info.shape}" for info in later[-2:])
        raise LayerError(
            f"{type(model).__name__}: no layer can be chosen automatically: "
            + (f"after its last feature map it goes on in layouts the engine cannot read as a map of the "
               f"input ({example})" if later else "it produces no feature map of its input")
            + "; pass target_layer= the name of a layer whose output is one, or reshape="
        )
    info = found[usable[-1]]
    return info.name, (f"the last {info.layout.kind} feature map {tuple(info.map_size)} of the input before "
                       "the network pools it away")


def layer_reader(name: str, output: Any, input_size: Sequence[int], model: nn.Module,
                 reshape: Callable | None = None, batch: int | None = None) -> Callable[[Any], torch.Tensor]:
    """The function that reads layer ``name``'s output as a map: ``reshape`` when given (its result
    checked; the output may then be a dict, tuple or list of tensors, as an FPN backbone's), else the
    output's :class:`.layouts.Layout`; a LayerError that says what was found, and which layer would do,
    when neither gives a map of the input. ``batch``: the input's batch size (default: the output's)."""
    batch, axes = output.shape[0] if batch is None else batch, map_axes(input_size)
    size = "×".join(str(s) for s in input_size)
    if reshape is not None:
        mapped = reshape(detached(output))
        if not isinstance(mapped, torch.Tensor):
            raise LayerError(f"reshape gave a {type(mapped).__name__} for layer {name!r}, not a {axes} tensor")
        if mapped.shape[0] != batch or not is_feature_map(tuple(mapped.shape), input_size):
            raise LayerError(f"reshape gave {tuple(mapped.shape)} for layer {name!r} and a batch of {batch} "
                             f"{size} inputs: not a {axes} feature map of the input")
        return reshape
    layout = find_layout(output.shape, input_size, batch, model, name)
    if layout is None:
        raise LayerError(
            f"layer {name!r} gives {tuple(output.shape)} for a batch of {batch} {size} inputs: "
            f"{_what(output, input_size)}, not a {axes} feature map of the input (channels-first or -last) "
            f"nor tokens on a known patch grid; choose a layer whose output is one"
            f"{_alternative(model, name)}, or pass reshape="
        )
    return layout


def _what(output: torch.Tensor, input_size: Sequence[int]) -> str:
    """What an output that is no map of the input looks like, for an error message."""
    if output.dim() <= 2:
        return "one vector per sample"
    if output.dim() == 3 and len(input_size) == 2:
        return "a token sequence whose patch grid is unknown"
    if output.dim() == len(input_size) + 2:
        return "an attention tensor or a map of something else"
    return f"{output.dim()} axes for an input with {len(input_size)} spatial axes"


def _alternative(model: nn.Module, name: str) -> str:
    """' (e.g. the automatic layer …)' for an error message, when the model has one."""
    chosen = transformer_layer(model) or (_AUTO_CACHE[model][0] if model in _AUTO_CACHE else None)
    hint = f"e.g. the automatic layer {chosen!r}; " if chosen and chosen != name else ""
    return f" ({hint}`gradcam layers` lists them)"


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


def stage_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """One layer per resolution stage, shallow to deep: the last usable module at each feature-map size,
    not counting modules inside a block that changes the size (a ResNet bottleneck, an inverted
    residual), so ResNet gives relu, layer1 … layer4 and VGG the ReLU after each block's last conv."""
    infos = candidate_layers(model, x)
    size = {info.name: info.map_size for info in infos}
    modules = dict(model.named_modules())
    last: dict[tuple, str] = {}
    for info in infos:
        if info.usable and not _inside_resizing_block(info.name, size, modules):
            last.pop(info.map_size, None)  # re-insert: order of the stage's last layer
            last[info.map_size] = info.name
    return list(last.values())


def _inside_resizing_block(name: str, size: dict, modules: dict) -> bool:
    parts = name.split(".")
    for depth in range(1, len(parts)):
        ancestor = ".".join(parts[:depth])
        plain_container = isinstance(modules[ancestor], (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        if not plain_container and ancestor in size and size[ancestor] != size[name]:
            return True
    return False

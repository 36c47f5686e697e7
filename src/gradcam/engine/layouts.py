"""Layouts: how a layer's output is read as a (B, C, *spatial) map of the input, or why it cannot be.

For an input (B, C, *S) — a signal (B, C, L), an image (B, C, H, W), a volume or clip (B, C, D, H, W) —
a layer's output is read as:

- **channels-first** (B, K, *s): a convolution's feature map (NCHW), each axis of s no larger than the
  input's, the two image axes scaled down by about the same stride;
- **channels-last** (B, *s, K): timm's Swin and MambaOut stages, ConvNeXt's block norms (NHWC);
  channels-first wins when both readings fit, unless the model says its activations are channels-last
  (``model.channels_last_activations = True``, as a Keras model's wrapper does: (B, 16, 16, 16) fits both);
- **tokens** (B, N, K) of an image: a vision transformer's sequence, its prefix tokens (class,
  distillation, register tokens: timm's ``num_prefix_tokens``, torchvision's class token) dropped and
  the patch tokens laid out on the patch grid — from the model's patch size and the input's size, else
  from N and the input's aspect ratio. Only models that declare their prefix tokens: Hiera, say, orders
  its tokens by mask unit, and a raster reading of them would be wrong.

Anything else (an attention tensor (B, heads, N, d), a flat vector, a tensor whose first axis is not the
batch) has no layout: naming it is an error, never a map stretched over the input. The automatic layer
of a vision transformer is its last block's first norm (pytorch-grad-cam #513): the last block's output
patch tokens get no gradient when only the class token feeds the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

CHANNELS_FIRST, CHANNELS_LAST, TOKENS = "channels-first", "channels-last", "tokens"
CHANNELS_LAST_ACTIVATIONS = "channels_last_activations"  # a model's attribute: True when its maps are (B, *s, C)
_AXES = {1: "(B, C, l)", 2: "(B, C, h, w)", 3: "(B, C, d, h, w)"}


def map_axes(input_size: Sequence[int]) -> str:
    """How a map of an input with these spatial axes is written: "(B, C, h, w)" for an image."""
    return _AXES.get(len(input_size), f"(B, C, *{len(input_size)} axes)")


def is_feature_map(shape: Sequence[int], input_size: Sequence[int]) -> bool:
    """Whether a (B, K, *s) shape is a channels-first map of an input with spatial size ``input_size``:
    as many spatial axes, none larger than the input's, and for images (the last two axes) the same
    stride on both, as a feature map's are: within a factor of 1.5, or one stride S that gives both
    sizes with some rounding (|h − H/S| < 1 and |w − W/S| < 1: floor, ceil or padding, so ResNet's
    (1, 2) map of a 32×40 input and its (1, 1) axes count). An attention tensor (B, heads, N, d) or a
    channels-last (B, h, w, C) output is not. The depth or time axis of a volume or clip may be
    strided differently (video networks do)."""
    spatial = tuple(shape[2:])
    if len(shape) < 3 or len(spatial) != len(input_size):
        return False
    if not all(0 < s <= size for s, size in zip(spatial, input_size)):
        return False
    if len(spatial) < 2:
        return True
    (h, w), (height, width) = spatial[-2:], input_size[-2:]
    stride_h, stride_w = height / h, width / w
    return max(stride_h, stride_w) <= 1.5 * min(stride_h, stride_w) or _one_stride((h, w), (height, width))


def _one_stride(sizes: Sequence[int], input_size: Sequence[int]) -> bool:
    """Whether one stride S gives every axis's size up to rounding: s − 1 < n / S < s + 1 for each."""
    low = max(n / (s + 1) for s, n in zip(sizes, input_size))
    high = min(n / (s - 1) if s > 1 else math.inf for s, n in zip(sizes, input_size))
    return low < high


@dataclass(frozen=True)
class Layout:
    """How one layer's output is read as a (B, K, *spatial) map: ``layout(output)`` gives the map."""

    kind: str
    prefix: int = 0  # tokens: how many precede the patch tokens
    grid: tuple = ()  # tokens: the patch grid (h, w)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.kind == CHANNELS_LAST:
            return tensor.movedim(-1, 1)
        if self.kind == TOKENS:
            return tensor[:, self.prefix:, :].reshape(tensor.shape[0], *self.grid, tensor.shape[2]).movedim(-1, 1)
        return tensor

    def map_shape(self, shape: Sequence[int]) -> tuple:
        """The (B, K, *spatial) shape of the map of an output of ``shape``."""
        if self.kind == CHANNELS_LAST:
            return (shape[0], shape[-1], *shape[1:-1])
        if self.kind == TOKENS:
            return (shape[0], shape[2], *self.grid)
        return tuple(shape)

    def ablate(self, copies: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """Copies of the layer's output (n, ...) with map channel ``channels[j]`` zeroed in copy j (at
        every position of the map; a transformer's prefix tokens are not positions), in place."""
        rows = torch.arange(len(copies), device=copies.device)
        if self.kind == CHANNELS_LAST:
            copies[rows, ..., channels] = 0
        elif self.kind == TOKENS:
            copies[rows, self.prefix:, channels] = 0
        else:
            copies[rows, channels] = 0
        return copies


def find_layout(shape: Sequence[int], input_size: Sequence[int], batch: int,
                model: nn.Module | None = None, name: str | None = None) -> Layout | None:
    """The layout of layer ``name``'s output of ``shape`` for an input of ``batch`` samples of spatial
    size ``input_size``, or None when it cannot be read as a map of the input."""
    shape = tuple(shape)
    if len(shape) < 3 or shape[0] != batch:
        return None
    first = is_feature_map(shape, input_size)
    last = is_feature_map((shape[0], shape[-1], *shape[1:-1]), input_size)
    if last and (not first or getattr(model, CHANNELS_LAST_ACTIVATIONS, False)):
        return Layout(CHANNELS_LAST)
    if first:
        return Layout(CHANNELS_FIRST)
    if len(shape) == 3 and len(input_size) == 2:
        return _token_layout(shape, input_size, model, name)
    return None


def _token_layout(shape: tuple, input_size: Sequence[int], model: nn.Module | None,
                  name: str | None = None) -> Layout | None:
    """Tokens (B, N, K) on a grid the model declares: the resolution of the layer's own stage (a Swin
    block's tokens, :func:`stage_grid`), or the patch grid of a model that says how many prefix tokens
    it has: N = prefix + h·w (or N = h·w, as in CaiT's and XCiT's blocks, which hold patch tokens only);
    without a patch size from the model, the grid of N − prefix tokens closest to the input's aspect
    ratio. Tokens of a model that declares neither are not read (Hiera orders its tokens by mask unit)."""
    tokens, prefix = shape[1], prefix_tokens(model)
    grid = stage_grid(model, name, tokens)
    if grid is not None and is_feature_map((shape[0], shape[2], *grid), input_size):
        return Layout(TOKENS, 0, grid)
    if prefix is None:
        return None
    grid = model_grid(model, input_size)
    if grid is not None:
        fits = [p for p in (prefix, 0) if tokens == grid[0] * grid[1] + p]
        return Layout(TOKENS, fits[0], grid) if fits else None
    grid = patch_grid(input_size, tokens - prefix)
    if grid is None or not is_feature_map((shape[0], shape[2], *grid), input_size):
        return None
    return Layout(TOKENS, prefix, grid)


def stage_grid(model: nn.Module | None, name: str | None, tokens: int) -> tuple[int, int] | None:
    """(h, w) of the tokens of layer ``name`` from the resolution its nearest enclosing module declares
    (timm's Swin blocks and stages: ``input_resolution``, ``output_resolution``; a Swin block's norms and
    MLP see its (h, w) map flattened to h·w tokens, row by row), when h·w is the number of tokens."""
    if model is None or not name:
        return None
    parts = name.split(".")
    for depth in range(len(parts), 0, -1):
        module = model.get_submodule(".".join(parts[:depth]))
        sizes = [getattr(module, key, None) for key in ("input_resolution", "output_resolution")]
        sizes = [tuple(size) for size in sizes if isinstance(size, (tuple, list)) and len(size) == 2]
        if sizes:
            return next((size for size in sizes if size[0] * size[1] == tokens), None)
    return None


def prefix_tokens(model: nn.Module | None) -> int | None:
    """How many tokens precede the patch tokens, when the model says."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision ViT
        return 1
    return None


def model_grid(model: nn.Module | None, input_size: Sequence[int]) -> tuple[int, int] | None:
    """(h, w) of the patch grid of an input of ``input_size`` from the model's patch size (timm's
    ``patch_embed.patch_size``, torchvision's ``patch_size``), when it has one."""
    size = getattr(getattr(model, "patch_embed", None), "patch_size", None) or getattr(model, "patch_size", None)
    if size is None:
        return None
    ph, pw = (size, size) if isinstance(size, int) else tuple(size)
    return input_size[0] // ph, input_size[1] // pw


def patch_grid(input_size: Sequence[int], patches: int) -> tuple[int, int] | None:
    """(h, w) of ``patches`` tokens: the factorisation closest to the input's aspect ratio, within 20 %."""
    height, width = input_size
    best = None
    for h in range(1, patches + 1):
        w = patches // h
        error = abs(math.log((h / w) / (height / width))) if h * w == patches else math.inf
        if error <= math.log(1.2) and (best is None or error < best[0]):
            best = (error, (h, w))
    return best[1] if best else None


def transformer_layer(model: nn.Module) -> str | None:
    """The automatic layer of a timm or torchvision vision transformer that declares its prefix tokens,
    else None. A class-token model: the last block's first norm (``blocks.11.norm1``,
    ``encoder.layers.encoder_layer_11.ln_1``), whose patch tokens get the gradient through the class
    token's attention (the block's output patch tokens get none). A model that pools its patch tokens
    (timm's ``global_pool="avg"``, "max", "avgmax"): the last block itself, which the head reads."""
    if prefix_tokens(model) is None:
        return None
    names = dict(model.named_modules())
    for blocks, norm in (("blocks", "norm1"), ("encoder.layers", "ln_1")):
        container = names.get(blocks)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container):
            last = list(container.named_children())[-1][0]  # "11", or torchvision's "encoder_layer_11"
            name = f"{blocks}.{last}" if pools_tokens(model) else f"{blocks}.{last}.{norm}"
            if name in names:
                return name
    return None


def pools_tokens(model: nn.Module) -> bool:
    """Whether a transformer's head reads the mean or maximum of its patch tokens (timm's global_pool)."""
    return getattr(model, "global_pool", None) in ("avg", "max", "avgmax")

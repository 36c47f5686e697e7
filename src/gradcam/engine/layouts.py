"""Token layouts: a vision transformer's (B, N, C) sequence read as a (B, C, h, w) map.

The prefix tokens (class, distillation, register tokens: timm's ``num_prefix_tokens``, torchvision's
class token) are dropped and the patch tokens laid out on the patch grid: from the model's patch size
and the input's size (timm ``patch_embed.patch_size``, torchvision ``patch_size``), else from N and
the input's aspect ratio. The automatic layer of such a model is its last block's first norm
(pytorch-grad-cam #513): the last block's output patch tokens get no gradient when only the class
token feeds the head.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn


def prefix_tokens(model: nn.Module) -> int | None:
    """How many tokens precede the patch tokens, when the model says."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision ViT
        return 1
    return None


def patch_grid(model: nn.Module, input_size: Sequence[int], patches: int) -> tuple[int, int] | None:
    """(h, w) of the patch grid for an input of ``input_size`` with ``patches`` patch tokens."""
    size = getattr(getattr(model, "patch_embed", None), "patch_size", None) or getattr(model, "patch_size", None)
    if size is not None:
        ph, pw = (size, size) if isinstance(size, int) else tuple(size)
        grid = (input_size[0] // ph, input_size[1] // pw)
        if grid[0] * grid[1] == patches:
            return grid
    aspect = input_size[0] / input_size[1]  # h / w
    for h in range(1, patches + 1):
        if patches % h == 0 and math.isclose(h / (patches // h), aspect, rel_tol=0.2):
            return h, patches // h
    return None


def token_reshape(model: nn.Module, tokens: torch.Tensor, input_size: Sequence[int]) -> Callable | None:
    """A reshape (B, N, C) -> (B, C, h, w) for this model's tokens, or None when the layout is unknown."""
    prefix = prefix_tokens(model)
    if prefix is None or tokens.dim() != 3:
        return None
    grid = patch_grid(model, input_size, tokens.shape[1] - prefix)
    if grid is None:
        return None

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def transformer_layer(model: nn.Module) -> str | None:
    """The last block's first norm of a timm (``blocks.11.norm1``) or torchvision
    (``encoder.layers.encoder_layer_11.ln_1``) vision transformer with prefix tokens, else None."""
    if prefix_tokens(model) is None:
        return None
    names = dict(model.named_modules())
    for blocks, norm in (("blocks", "norm1"), ("encoder.layers", "ln_1")):
        container = names.get(blocks)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container):
            last = list(container.named_children())[-1][0]  # "11", or torchvision's "encoder_layer_11"
            name = f"{blocks}.{last}.{norm}"
            if name in names:
                return name
    return None

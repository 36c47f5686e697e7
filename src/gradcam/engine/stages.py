"""The layers a sweep explains: one per resolution stage of the network, shallow to deep."""

from __future__ import annotations

import torch
from torch import nn

from gradcam.engine.layers import candidate_layers


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

"""Class names a model comes with: ImageNet's 1000 (offline, from torchvision's weights metadata), or the
categories a model's own weights carry when their number fits its outputs."""

from __future__ import annotations

import functools
from typing import Sequence


@functools.lru_cache(maxsize=None)
def _imagenet() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (offline, from torchvision's metadata)."""
    return list(_imagenet())


def class_names(outputs: int | None, categories: Sequence[str] | None = None) -> list[str] | None:
    """``categories`` when there is one per output; ImageNet's names for 1000 outputs; else None."""
    if categories and len(categories) == outputs:
        return list(categories)
    return imagenet_labels() if outputs == 1000 else None

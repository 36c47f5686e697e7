"""A folder written by ``gradcam train`` (``config.json`` + ``model.safetensors``): the model with its class
names and preprocessing; its fingerprint is those two files."""

from __future__ import annotations

from pathlib import Path

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle
from gradcam.models.checkpoint import is_checkpoint, load_checkpoint
from gradcam.models.sources.registry import register_source


def _files(spec: str, weights: Path | None) -> list[Path]:
    return [Path(spec) / "config.json", Path(spec) / "model.safetensors"]


@register_source(name="checkpoint", claims=is_checkpoint, files=_files,
                 description="DIR: a folder written by `gradcam train`")
def load(spec: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    if weights is not None:
        raise ModelError(f"{spec} is a `gradcam train` folder, which carries its own weights; "
                         "drop weights= / --weights")
    return load_checkpoint(spec)

"""``ultralytics/<local .pt or .yaml>``: an Ultralytics YOLO detector (the optional extra ``yolo``, AGPL-3.0),
images in [0, 1] at 640 px, with torchvision's detector output."""

from __future__ import annotations

from pathlib import Path

from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.sources.registry import register_source
from gradcam.models.yolo import load_yolo


@register_source("ultralytics", files=lambda spec, weights: [Path(spec)] if Path(spec).is_file() else [],
                 description="ultralytics/<file.pt or .yaml>: a YOLO detector (extra gradcam[yolo])")
def load(spec: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    model, labels = load_yolo(spec)
    return ModelBundle(module=model, labels=labels, name=f"ultralytics/{spec}",
                       preprocess=Preprocess(size=640, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))

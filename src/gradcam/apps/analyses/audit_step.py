"""``audit``'s per-batch step: a batch of decoded images with their classes and objects in, per image the
prediction, the map of its class and where that map lies (on the object or not, its energy there) out, as plain
rows. The local engine and a Ray Data actor call the same step, so both give the same figures; the driver
(:mod:`.audit`) gathers the rows into the data set's figures (accuracy, the pointing game, each map's likeness
to its class's average) and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from gradcam.apps.analyses.annotations import Item, object_mask
from gradcam.apps.analyses.engines import preprocessed
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.model_cache import bundle_on_device
from gradcam.engine.methods import create_method
from gradcam.errors import DataError, GradCAMError, OptionError
from gradcam.metrics.localisation import energy_inside, pointing_game


class AuditStep:
    """One audit's step: the method on the model (loaded once) and how the objects are read.

    ``objects``: each image has an object (a box or a mask file), else none; ``tolerance``: pixels of the
    model's input within which a map's peak counts as on the object; ``where``: what the messages name (the
    annotations file or the folder). ``step(batch)`` takes plain columns: "name" (N,) the images' names,
    "image" (N,) decoded RGB arrays (H, W, 3) uint8, "label" (N,) each one's class index (-1 in every row: no
    class known, the map of the prediction), with ``objects`` "box" (N,) the box as JSON text ("null": none)
    and "mask" (N,) a mask file's path ("": none), optionally "path", "x" (N, C, H, W) the preprocessed inputs
    (else the step preprocesses "image") and "error" (N,) ("" for the readable ones). It returns per image
    "image", "predicted", "on_object" and "energy" (None without objects), "map" (float32, the input's
    spatial size), "path" and "error" ("", else why the image or its object could not be read)."""

    def __init__(self, *, model: Any = DEFAULT_MODEL, weights: Any = None, device: Any = None,
                 method: str = "gradcam", layer: Any = None, objects: bool = True, tolerance: float = 0,
                 where: str = ""):
        self.bundle, self.device = bundle_on_device(model, weights, device)
        self.cam = create_method(method, self.bundle.module, layer)
        self.objects, self.tolerance, self.where = objects, float(tolerance), where

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        names = [str(n) for n in batch["name"]]
        paths = [str(p) for p in batch.get("path", names)]
        errors = [str(e) if e is not None else "" for e in batch.get("error", [""] * len(names))]
        labels = [int(v) for v in batch["label"]]
        masks = {}
        for j, name in enumerate(names):
            if self.objects and not errors[j]:
                try:
                    masks[j] = self._mask(batch, j, name)
                except (DataError, GradCAMError) as exc:
                    errors[j] = str(exc)
        good = [j for j, error in enumerate(errors) if not error]
        found = {}
        if good:
            x = preprocessed(batch, good, self.bundle.preprocess).to(self.device)
            known = [labels[j] >= 0 for j in good]
            if any(known) and not all(known):
                raise OptionError("a label for every image of a batch, or for none (-1: the prediction's map)")
            figures = batch_figures(self.cam, x, torch.tensor([labels[j] for j in good]) if all(known) else None,
                                    torch.stack([masks[j] for j in good]) if self.objects else None, self.tolerance)
            found = dict(zip(good, zip(*[v if v is not None else [None] * len(good) for v in figures])))
        rows = []
        for j, name in enumerate(names):
            if errors[j]:
                rows.append({"image": name, "predicted": None, "on_object": None, "energy": None, "map": None,
                             "path": paths[j], "error": errors[j]})
                continue
            predicted, heatmap, on_object, energy = found[j]
            rows.append({"image": name, "predicted": int(predicted), "on_object": _plain(on_object),
                         "energy": _plain(energy), "map": heatmap.numpy(), "path": paths[j], "error": ""})
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

    def _mask(self, batch: Mapping[str, Any], j: int, name: str) -> torch.Tensor:
        mask = str(batch["mask"][j] or "")
        item = Item(name, box=json.loads(str(batch["box"][j])), mask=Path(mask) if mask else None)
        picture = Image.fromarray(np.asarray(batch["image"][j], dtype=np.uint8))
        return object_mask(item, picture, self.bundle.preprocess.size, f"{self.where}: {name}")


def batch_figures(cam, x: torch.Tensor, labels: torch.Tensor | None, masks: torch.Tensor | None,
                  tolerance: float = 0) -> tuple:
    """(predicted (B,), the maps of ``labels`` (else of the predictions) (B, *spatial) float32 on the CPU, on the
    object (B,) bool and the energy on it (B,), both None without ``masks``) of one batch."""
    out = cam(x, targets=labels.to(x.device) if labels is not None else None)
    predicted = out.logits.argmax(dim=1).cpu()
    maps = out.maps.detach().float().cpu()
    if masks is None:
        return predicted, maps, None, None
    return predicted, maps, pointing_game(maps, masks.cpu(), tolerance), energy_inside(maps, masks.cpu())


def _plain(value: torch.Tensor | None) -> Any:
    """A 0-d tensor as a Python bool or float (None stays None)."""
    return None if value is None else value.item()

"""A data-set audit: is the model right for the right reasons? For every image with a known object mask,
whether the model is right, and whether the map of the true class lies on the object (pointing game,
energy inside: :mod:`gradcam.metrics.localisation`). A model that is right while its maps point elsewhere
has learned something else than the object: a watermark, a corner, the background."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.model_cache import bundle_on_device
from gradcam.engine.methods import create_method
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.targets import class_index
from gradcam.errors import DataError, ImageError, OptionError, TargetError
from gradcam.io.images import load_image
from gradcam.metrics.localisation import energy_inside, pointing_game
from gradcam.models.checkpoint import held_out_files
from gradcam.render.files import save_csv


@dataclass
class Audit:
    """Per image: ``predicted``, ``correct``, ``on_object`` (the true class's map peaks on the object)
    and ``energy`` (the share of the map's positive energy on it)."""

    labels: torch.Tensor
    predicted: torch.Tensor
    on_object: torch.Tensor
    energy: torch.Tensor
    threshold: float = 0.5
    names: list[str] = field(default_factory=list)  # the images' names (a folder audit)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) not audited
    classes: list[str] | None = None  # the model's class names, for the table
    split: str = "all"  # which images: "all", "held out" (a checkpoint's validation images), "listed"

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    @property
    def wrong_reasons(self) -> torch.Tensor:
        """(B,) bool: right, with a map whose peak is off the object."""
        return self.correct & ~self.on_object

    @property
    def share_wrong_reasons(self) -> float:
        """Among the right answers, the share whose map points off the object."""
        right = int(self.correct.sum())
        return float(self.wrong_reasons.sum()) / right if right else float("nan")

    @property
    def suspicious(self) -> bool:
        """More than ``threshold`` of the right answers point off the object."""
        return self.share_wrong_reasons > self.threshold

    def summary(self) -> str:
        right = int(self.correct.sum())
        if not right:
            return f"accuracy {self.accuracy:.1%}: no right answer to audit"
        verdict = ("right for the wrong reasons: look at the flagged images" if self.suspicious
                   else "its maps mostly lie on the objects")
        return (f"accuracy {self.accuracy:.1%}; of {right} right answers, {int(self.wrong_reasons.sum())} "
                f"({self.share_wrong_reasons:.1%}) point off the object; energy on the object "
                f"{float(self.energy.nanmean()):.1%} on average: {verdict}")

    @property
    def flagged(self) -> list[str]:
        """The names of the images that are right for the wrong reasons."""
        return [name for name, flag in zip(self.names, self.wrong_reasons.tolist()) if flag]

    def name(self, index: int) -> str:
        """Class ``index``'s name (its number when the model has no names)."""
        return self.classes[index] if self.classes and 0 <= index < len(self.classes) else str(index)

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``audit.csv``: per image its label and prediction (class names, and their indices), whether it is
        right, on the object, its energy on the object and whether it is flagged; written atomically.
        Returns {"audit": path}."""
        names = self.names or [str(i) for i in range(len(self.labels))]
        header = ["image", "label", "predicted", "correct", "on_object", "energy_on_object", "flagged",
                  "label_index", "predicted_index"]
        rows = ([name, self.name(int(self.labels[i])), self.name(int(self.predicted[i])), bool(self.correct[i]),
                 bool(self.on_object[i]), round(float(self.energy[i]), 6), bool(self.wrong_reasons[i]),
                 int(self.labels[i]), int(self.predicted[i])] for i, name in enumerate(names))
        return {"audit": save_csv(Path(directory) / "audit.csv", header, rows)}


def audit(model, x: torch.Tensor, labels: Any, masks: torch.Tensor, *, method: str = "gradcam", layer: Any = None,
          batch_size: int = 32, threshold: float = 0.5, **options: Any) -> Audit:
    """Audit ``model`` on the preprocessed images ``x`` (B, C, *spatial) with their true ``labels`` (B,)
    and object ``masks`` (B, *spatial, bool): the maps are those of the true class, by ``method`` (or
    ``model`` is a method made already)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    masks = torch.as_tensor(masks)
    if len(labels) != len(x) or len(masks) != len(x):
        raise OptionError(f"one label and one mask per image: {len(x)} images, {len(labels)} labels, "
                          f"{len(masks)} masks")
    if int(batch_size) < 1 or not 0.0 <= threshold <= 1.0:
        raise OptionError(f"batch_size must be >= 1 and threshold in [0, 1], got {batch_size} and {threshold}")
    cam = model if isinstance(model, CAMMethod) else create_method(method, model, layer, **options)
    predicted, on_object, energy = [], [], []
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        out = cam(x[rows], targets=labels[rows].to(x.device))
        predicted.append(out.logits.argmax(dim=1).cpu())
        maps = out.maps.cpu()
        on_object.append(pointing_game(maps, masks[rows].cpu()))
        energy.append(energy_inside(maps, masks[rows].cpu()))
    return Audit(labels.cpu(), torch.cat(predicted), torch.cat(on_object), torch.cat(energy), threshold)


def audit_folder(folder: str | os.PathLike, annotations: str | os.PathLike | None = None, *, model: Any = DEFAULT_MODEL,
                 weights: Any = None, device: Any = None, method: str = "gradcam", layer: Any = None,
                 batch_size: int = 32, threshold: float = 0.5, split: str | None = "all",
                 files: Sequence[str] | None = None) -> Audit:
    """Audit ``model`` on the images that ``annotations`` (default ``folder/boxes.json``, as ``gradcam
    make-shapes`` writes) lists: ``{"relative/path.png": {"class": NAME or INDEX, "box": [x0, y0, x1, y1]}}``,
    the box in the image's pixels, inclusive. The model sees each whole image resized, so each box is
    scaled the same way into a mask. An image that cannot be read is reported in ``failed``.

    Which images: ``files`` (paths relative to ``folder``), else ``split``: "all" the annotated images,
    "val" those a `gradcam train` checkpoint held out for validation (an audit of the training images
    says little), "auto" val for such a checkpoint and all otherwise."""
    folder = Path(folder)
    path = Path(annotations) if annotations is not None else folder / "boxes.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the annotations ({exc})") from None
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{path}: expected {{\"image\": {{\"class\": name, \"box\": [x0, y0, x1, y1]}}, ...}}")
    items, chosen = _chosen(entries, model, split, files, path)
    bundle, device = bundle_on_device(model, weights, device)
    cam = create_method(method, bundle.module, layer)
    parts, names, failed = [], [], []
    for start in range(0, len(items), batch_size):  # a batch of images in memory at a time
        pictures, labels, masks = [], [], []
        for name, entry in items[start : start + batch_size]:
            try:
                label = _class_index(entry.get("class") if isinstance(entry, dict) else None, bundle.labels, name)
                picture = load_image(folder / name)
            except ImageError as exc:
                failed.append((name, str(exc)))
                continue
            pictures.append(picture)
            labels.append(label)
            masks.append(_box_mask(entry.get("box"), picture, bundle.preprocess.size, f"{path}: {name}"))
            names.append(name)
        if pictures:
            x = bundle.preprocess.batch(pictures).to(device)
            parts.append(audit(cam, x, labels, torch.stack(masks), batch_size=batch_size, threshold=threshold))
    if not parts:
        raise ImageError("no listed image could be read: " + "; ".join(why for _, why in failed))
    return Audit(*(torch.cat([getattr(p, k) for p in parts]) for k in ("labels", "predicted", "on_object", "energy")),
                 threshold=threshold, names=names, failed=failed, classes=bundle.labels, split=chosen)


def _chosen(entries: dict, model: Any, split: str | None, files: Sequence[str] | None, path: Path):
    """The annotated (name, entry) pairs to audit, and what they are ("all", "held out", "listed")."""
    if files is not None:
        listed = [str(f).replace(os.sep, "/") for f in files]
        missing = [f for f in listed if f not in entries]
        if missing or not listed:
            raise DataError(f"{path} has no annotation for {missing[0]!r}" if missing else "files: the list is empty")
        return [(f, entries[f]) for f in listed], "listed"
    if split not in ("all", "val", "auto", None):
        raise OptionError(f"split must be all, val or auto, got {split!r}")
    held = held_out_files(model) if isinstance(model, (str, os.PathLike)) else None
    if split == "val" and held is None:
        raise OptionError(f"split val needs a `gradcam train` checkpoint, which names its held-out images; "
                          f"{model!r} is not one (use split all, or a list of files)")
    if split in ("val", "auto") and held is not None:
        chosen = [(f, entries[f]) for f in held if f in entries]
        if not chosen:
            raise DataError(f"{path} annotates none of the {len(held)} images {model} held out "
                            "(is this the folder it was trained on?)")
        return chosen, "held out"
    return list(entries.items()), "all"


def _box_mask(box: Any, picture, size: int, where: str) -> torch.Tensor:
    """The (size, size) mask of an inclusive [x0, y0, x1, y1] box in ``picture``'s pixels, once the whole
    picture is resized to size × size."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise DataError(f"{where}: box must be [x0, y0, x1, y1] in the image's pixels, got {box!r}")
    sx, sy = size / picture.width, size / picture.height
    x0, y0 = max(0, int(box[0] * sx)), max(0, int(box[1] * sy))
    x1, y1 = max(x0 + 1, int((box[2] + 1) * sx)), max(y0 + 1, int((box[3] + 1) * sy))
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _class_index(value: Any, labels, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    try:
        return class_index(value, labels) if isinstance(value, str) else class_index(repr(value), None)
    except TargetError as exc:
        raise DataError(f"{name}: class {value!r} is not one of the model's classes ({exc})") from None

"""What an audit reads beside the images: which images, the class of each, and its object as a mask.

Three ways, the first that applies:

- an annotations file (``boxes.json``, as ``gradcam make-shapes`` writes it): ``{"relative/path.png":
  {"class": NAME or INDEX, "box": [x0, y0, x1, y1]}}``, the box in the image's pixels, inclusive; or
  ``"mask": "relative/mask.png"`` (relative to the file's folder) instead of the box;
- a folder of mask PNGs mirroring the images (``masks/circle/0001.png`` for ``circle/0001.png``, any image
  suffix), the class from the image's sub-folder;
- nothing: the class from the image's sub-folder when every sub-folder is one of the model's classes, else
  the model's prediction; no object, so the audit compares each map with its class's average map.

A mask PNG is the object where its pixels are above half-grey, and has the image's size."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gradcam.engine.targets import class_index
from gradcam.errors import DataError, ImageError, TargetError
from gradcam.io.images import IMAGE_SUFFIXES

BOXES, MASKS, NONE = "boxes", "masks", "none"  # what the objects come from


@dataclass
class Item:
    """One image to audit: ``name`` relative to the folder ("circle/0001.png"); ``label`` a class name or
    index (None: the prediction); its object as a ``box`` or a ``mask`` file (neither: no object)."""

    name: str
    label: Any = None
    box: Any = None
    mask: Path | None = None


def read_items(folder: Path, annotations: Path | None, masks: Path | None) -> tuple[list[Item], str, Path | None]:
    """(the items, where their objects come from: BOXES, MASKS or NONE, the annotations file read)."""
    path = annotations if annotations is not None else folder / "boxes.json"
    if annotations is not None or path.is_file():
        return _from_file(path, masks), BOXES, path
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and (masks is None or not _under(p, masks)))
    if not names:
        raise DataError(f"{folder}: no image to audit (and no boxes.json)")
    labels = [name.split("/")[0] if "/" in name else None for name in names]
    if masks is not None:
        return [Item(n, label, mask=_mirror(masks, n)) for n, label in zip(names, labels)], MASKS, None
    return [Item(n, label) for n, label in zip(names, labels)], NONE, None


def _from_file(path: Path, masks: Path | None) -> list[Item]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the annotations ({exc})") from None
    if not isinstance(entries, dict) or not entries:
        raise DataError(f'{path}: expected {{"image": {{"class": name, "box": [x0, y0, x1, y1]}}, ...}}')
    items = []
    for name, entry in entries.items():
        entry = entry if isinstance(entry, dict) else {}
        mask = entry.get("mask")
        items.append(Item(str(name), entry.get("class"), entry.get("box"),
                          path.parent / mask if isinstance(mask, str) else
                          _mirror(masks, str(name)) if masks is not None and "box" not in entry else None))
    return items


def _mirror(masks: Path, name: str) -> Path:
    """The mask PNG of image ``name`` in the ``masks`` folder: the same relative path, suffix .png."""
    return masks / Path(name).with_suffix(".png")


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def folder_labels(items: list[Item], classes) -> bool:
    """Whether the sub-folders name the classes: every item in one, each one of the model's ``classes``."""
    return bool(classes) and all(item.label is not None and item.label in classes for item in items)


def label_index(value: Any, classes, name: str) -> int:
    """The index of the class ``value`` (a name or an index) of image ``name``; a DataError names both."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if classes and value >= len(classes):
            raise DataError(f"{name}: class {value} is out of range for the model's {len(classes)} classes")
        return value
    try:
        return class_index(value, classes) if isinstance(value, str) else class_index(repr(value), None)
    except TargetError as exc:
        raise DataError(f"{name}: class {value!r} is not one of the model's classes ({exc})") from None


def object_mask(item: Item, picture: Image.Image, size: int, where: str) -> torch.Tensor:
    """The (size, size) bool mask of the item's object, once the whole picture is resized to size × size."""
    if item.mask is not None:
        return _mask_file(item.mask, picture, size, where)
    return _box_mask(item.box, picture, size, where)


def _mask_file(path: Path, picture: Image.Image, size: int, where: str) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            mask = image.convert("L")
    except OSError as exc:
        raise ImageError(f"{where}: cannot read the mask {path} ({exc.strerror or exc})") from None
    if mask.size != picture.size:
        raise DataError(f"{where}: the mask {path} is {mask.width}×{mask.height}, the image "
                        f"{picture.width}×{picture.height}")
    resized = mask.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(resized) > 127)


def _box_mask(box: Any, picture: Image.Image, size: int, where: str) -> torch.Tensor:
    """The mask of an inclusive [x0, y0, x1, y1] box in ``picture``'s pixels, scaled as the picture is."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise DataError(f"{where}: box must be [x0, y0, x1, y1] in the image's pixels, got {box!r}")
    sx, sy = size / picture.width, size / picture.height
    x0, y0 = max(0, int(box[0] * sx)), max(0, int(box[1] * sy))
    x1, y1 = max(x0 + 1, int((box[2] + 1) * sx)), max(y0 + 1, int((box[3] + 1) * sy))
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def relative(name: str | os.PathLike) -> str:
    """A listed file's name as the annotations spell it: relative, with "/"."""
    return str(name).replace(os.sep, "/")

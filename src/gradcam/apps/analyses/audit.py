"""A data-set audit: is the model right for the right reasons? For every image with a known object mask,
whether the model is right, and whether the map of the true class lies on the object (pointing game,
energy inside: :mod:`gradcam.metrics.localisation`). A model that is right while its maps point elsewhere
has learned something else than the object: a watermark, a corner, the background.

With no object annotated, the audit compares each image's map with the average map of its class (Pearson
correlation of the maps, each divided by its maximum): the images least like their class's average are
where to look first."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from gradcam.apps.analyses.annotations import NONE, folder_labels, label_index, read_items, relative
from gradcam.apps.analyses.audit_step import AuditStep, batch_figures
from gradcam.apps.analyses.engines import run_step
from gradcam.apps.explainer import DEFAULT_MODEL
from gradcam.apps.pipeline.job import check_engine
from gradcam.engine.methods import create_method
from gradcam.engine.methods.base import CAMMethod
from gradcam.errors import DataError, GradCAMError, OptionError
from gradcam.io.images import load_image
from gradcam.models.checkpoint import held_out_files, trained_on
from gradcam.render.files import save_csv, save_json
from gradcam.render.pictures import colorize, fit, map_overlay
from gradcam.render.report import THUMBNAIL, Report

GALLERY = 12  # pictures per gallery of the report


@dataclass
class Audit:
    """Per image: ``predicted``, ``correct``, ``on_object`` (the true class's map peaks on the object, within
    ``tolerance`` pixels of the model's input) and ``energy`` (the share of the map's positive energy on it);
    both None when no object is known. ``maps``: the true class's maps at the layer's resolution;
    ``likeness``: each map's correlation with its class's average map."""

    labels: torch.Tensor
    predicted: torch.Tensor
    on_object: torch.Tensor | None
    energy: torch.Tensor | None
    threshold: float = 0.5
    names: list[str] = field(default_factory=list)  # the images' names (a folder audit)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image, reason) not audited
    classes: list[str] | None = None  # the model's class names, for the table
    split: str = "all"  # which images: "all", "held out" (a checkpoint's validation images), "listed"
    maps: torch.Tensor | None = field(default=None, repr=False)
    likeness: torch.Tensor | None = None
    labelled: bool = True  # False: the labels are the predictions (no class was known)
    tolerance: float = 0.0
    model: str = ""
    method: str = "gradcam"
    root: Path | None = None  # the folder the names are relative to

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if self.labelled else float("nan")

    @property
    def pointing(self) -> float:
        """The pointing game: the share of the images whose map peaks on the object."""
        return float(self.on_object.float().mean()) if self.on_object is not None else float("nan")

    @property
    def wrong_reasons(self) -> torch.Tensor:
        """(B,) bool: right, with a map whose peak is off the object."""
        if self.on_object is None:
            return torch.zeros_like(self.correct)
        return self.correct & ~self.on_object

    @property
    def share_wrong_reasons(self) -> float:
        """Among the right answers, the share whose map points off the object."""
        right = int(self.correct.sum())
        return float(self.wrong_reasons.sum()) / right if right and self.on_object is not None else float("nan")

    @property
    def suspicious(self) -> bool:
        """More than ``threshold`` of the right answers point off the object."""
        return self.share_wrong_reasons > self.threshold

    def summary(self) -> str:
        if self.on_object is None:
            told = f"accuracy {self.accuracy:.1%}" if self.labelled else "no class known: the maps of the predictions"
            return (f"{told}; no object annotated: the images least like their class's average map are where to "
                    "look first")
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
        return [name for name, flag in zip(self._names, self.wrong_reasons.tolist()) if flag]

    def look_here_first(self, k: int = GALLERY) -> list[int]:
        """The indices of the ``k`` images least like their class's average map (a constant map first)."""
        if self.likeness is None:
            return []
        order = sorted(range(len(self.likeness)), key=lambda i: (not math.isnan(v := float(self.likeness[i])), v))
        return order[:k]

    def name(self, index: int) -> str:
        """Class ``index``'s name (its number when the model has no names)."""
        return self.classes[index] if self.classes and 0 <= index < len(self.classes) else str(index)

    @property
    def _names(self) -> list[str]:
        return self.names or [str(i) for i in range(len(self.labels))]

    def figures(self, rows: torch.Tensor | None = None) -> dict:
        """accuracy, pointing game, energy inside, the share of right answers off the object, the flagged
        count, over ``rows`` (a bool (B,) selection; default all)."""
        rows = torch.ones_like(self.correct) if rows is None else rows
        def mean(values: torch.Tensor | None) -> float:
            return float(values[rows].float().nanmean()) if values is not None and rows.any() else float("nan")

        right = self.correct & rows
        wrong = self.wrong_reasons & rows
        return {"images": int(rows.sum()), "accuracy": mean(self.correct) if self.labelled else float("nan"),
                "pointing_game": mean(self.on_object), "energy_inside": mean(self.energy),
                "right_off_object": float(wrong.sum()) / int(right.sum())
                if right.any() and self.on_object is not None else float("nan"),
                "flagged": int(wrong.sum()) if self.on_object is not None else float("nan"),
                "likeness": mean(self.likeness)}

    def per_class(self) -> dict[str, dict]:
        return {self.name(c): self.figures(self.labels == c) for c in sorted(set(self.labels.tolist()))}

    def summary_json(self) -> dict:
        return {"model": self.model, "method": self.method, "split": self.split, "labelled": self.labelled,
                "objects": self.on_object is not None, "tolerance": self.tolerance, "threshold": self.threshold,
                "flag": self.suspicious, "summary": self.summary(), "overall": self.figures(),
                "classes": self.per_class(), "flagged_images": self.flagged,
                "look_here_first": [self._names[i] for i in self.look_here_first()],
                "failed": [{"image": str(i), "reason": why} for i, why in self.failed]}

    def report(self) -> Report:
        page = Report(f"Audit of {self.model or 'the model'}",
                      f"{self.method} · {len(self.labels)} image(s) ({self.split})")
        page.text(self.summary() + ".")
        for image, why in self.failed:
            page.text(f"Not audited: {why}")
        columns = ["class", "images", "accuracy", "pointing game", "energy on the object", "right, off the object",
                   "flagged", "likeness to the class's average"]
        keys = ["images", "accuracy", "pointing_game", "energy_inside", "right_off_object", "flagged", "likeness"]
        figures = list(self.per_class().items()) + [("all", self.figures())]
        shown = [j for j, k in enumerate(keys) if any(not _missing(f[k]) for _, f in figures)]  # no empty column
        page.table([columns[0], *(columns[j + 1] for j in shown)],
                   [[name, *(f[keys[j]] for j in shown)] for name, f in figures],
                   caption="Per class: is the model right, and is its map of the true class on the object")
        if self.flagged:
            index = [i for i, flag in enumerate(self.wrong_reasons.tolist()) if flag][:GALLERY]
            page.gallery(f"Right for the wrong reasons ({len(self.flagged)})", self._pictures(index))
        if self.likeness is not None and self.maps is not None:
            page.gallery("Average map per class", [(f"{self.name(c)} ({int((self.labels == c).sum())} images)",
                                                    _average_picture(self.maps[self.labels == c]))
                                                   for c in sorted(set(self.labels.tolist()))])
            page.gallery("Look here first: the maps least like their class's average",
                         self._pictures(self.look_here_first()))
        return page

    def _pictures(self, index: Sequence[int]) -> list[tuple[str, Any]]:
        """(caption, the image with its map) for the images ``index`` (those that can be read again)."""
        out = []
        for i in index:
            try:
                picture = fit(load_image(self.root / self._names[i] if self.root else self._names[i]), THUMBNAIL)
            except GradCAMError:
                continue
            caption = f"{self._names[i]}: {self.name(int(self.labels[i]))}"
            if self.likeness is not None:
                caption += f", likeness {float(self.likeness[i]):.2f}"
            if self.labelled and not bool(self.correct[i]):
                caption += f", predicted {self.name(int(self.predicted[i]))}"
            out.append((caption, map_overlay(picture, self.maps[i].numpy()) if self.maps is not None else picture))
        return out or [("no picture could be read again", np.zeros((8, 8, 3), np.uint8))]

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """``audit.csv``: per image its label and prediction (class names, and their indices), whether it is
        right, on the object, its energy on the object, whether it is flagged, its likeness to its class's
        average map; ``summary.json``; ``report.html``; each written atomically."""
        directory = Path(directory)
        header = ["image", "label", "predicted", "correct", "on_object", "energy_on_object", "flagged",
                  "likeness", "label_index", "predicted_index"]
        rows = ([name, self.name(int(self.labels[i])), self.name(int(self.predicted[i])),
                 bool(self.correct[i]) if self.labelled else None, _cell(self.on_object, i),
                 _cell(self.energy, i), bool(self.wrong_reasons[i]), _cell(self.likeness, i),
                 int(self.labels[i]), int(self.predicted[i])] for i, name in enumerate(self._names))
        return {"audit": save_csv(directory / "audit.csv", header, rows),
                "summary": save_json(self.summary_json(), directory / "summary.json"),
                "report": self.report().save(directory / "report.html")}


def audit(model, x: torch.Tensor, labels: Any = None, masks: torch.Tensor | None = None, *, method: str = "gradcam",
          layer: Any = None, batch_size: int = 32, threshold: float = 0.5, tolerance: float = 0,
          **options: Any) -> Audit:
    """Audit ``model`` on the preprocessed images ``x`` (B, C, *spatial) with their true ``labels`` (B,;
    None: the predictions) and object ``masks`` (B, *spatial, bool; None: no object): the maps are those of
    the true class, by ``method`` (or ``model`` is a method made already)."""
    labelled = labels is not None
    labels = torch.as_tensor(labels, dtype=torch.long) if labelled else None
    masks = torch.as_tensor(masks) if masks is not None else None
    if (labelled and len(labels) != len(x)) or (masks is not None and len(masks) != len(x)):
        raise OptionError(f"one label and one mask per image: {len(x)} images, "
                          f"{len(labels) if labelled else 'no'} labels, {len(masks) if masks is not None else 'no'} "
                          "masks")
    check_audit_options(batch_size, threshold, tolerance)
    cam = model if isinstance(model, CAMMethod) else create_method(method, model, layer, **options)
    parts = [batch_figures(cam, x[start : start + batch_size], labels[start : start + batch_size] if labelled else None,
                           masks[start : start + batch_size] if masks is not None else None, tolerance)
             for start in range(0, len(x), batch_size)]
    predicted, maps, on_object, energy = (_cat([part[k] for part in parts]) for k in range(4))
    return Audit(labels.cpu() if labelled else predicted, predicted, on_object, energy, threshold,
                 maps=maps, labelled=labelled, tolerance=float(tolerance))


def likeness(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) each map's Pearson correlation with the average map of its class, the maps (B, *spatial) each
    divided by its maximum first (a map with no positive value counts as zeros); NaN for a constant map."""
    flat = maps.flatten(1).float()
    peak = flat.amax(dim=1, keepdim=True)
    flat = torch.where(peak > 0, flat / peak.clamp_min(1e-12), torch.zeros_like(flat))
    out = torch.full((len(flat),), float("nan"))
    for c in labels.unique():
        rows = labels == c
        mine = flat[rows] - flat[rows].mean(dim=1, keepdim=True)
        average = flat[rows].mean(dim=0)
        average = average - average.mean()
        norm = mine.norm(dim=1) * average.norm()
        out[rows] = torch.where(norm > 0, (mine @ average) / norm.clamp_min(1e-30), torch.nan)
    return out


def check_audit_options(batch_size: int, threshold: float, tolerance: float) -> None:
    if int(batch_size) < 1 or not 0.0 <= float(threshold) <= 1.0 or float(tolerance) < 0:
        raise OptionError(f"batch_size must be >= 1, threshold in [0, 1] and tolerance >= 0, got {batch_size}, "
                          f"{threshold} and {tolerance}")


def audit_folder(folder: str | os.PathLike, annotations: str | os.PathLike | None = None, *, model: Any = DEFAULT_MODEL,
                 weights: Any = None, device: Any = None, method: str = "gradcam", layer: Any = None,
                 batch_size: int = 32, threshold: float = 0.5, split: str | None = "all",
                 files: Sequence[str] | None = None, masks: str | os.PathLike | None = None,
                 tolerance: float = 0, engine: str = "local", address: str | None = None,
                 actors: int | None = None, progress: bool | None = False) -> Audit:
    """Audit ``model`` on a folder (:mod:`gradcam.apps.analyses.annotations`: ``annotations``, default
    ``folder/boxes.json``; else the mask PNGs of ``masks``; else no object). The model sees each whole image
    resized, so each box or mask is scaled the same way. An image, mask or annotation that cannot be read
    is reported in ``failed`` and the rest is audited.

    Which images: ``files`` (paths relative to ``folder``), else ``split``: "all" the images, "val" those a
    `gradcam train` checkpoint held out for validation (an audit of the training images says little),
    "auto" val for such a checkpoint and all otherwise.

    ``engine``: "local" (this process) or "ray" (Ray Data, :mod:`.engines`: ``actors`` actors on Ray started
    here or on the cluster at ``address``, each reading the folder at its path): the same figures.
    ``progress``: a bar over the images (None: on a terminal; on Ray, Ray Data's own bars)."""
    check_engine(engine, address)
    check_audit_options(batch_size, threshold, tolerance)
    folder = Path(folder)
    items, objects, path = read_items(folder, Path(annotations) if annotations is not None else None,
                                      Path(masks) if masks is not None else None)
    items, chosen = _chosen(items, model, split, files, path or folder, folder)
    settings = dict(model=model, weights=weights, device=device, method=method, layer=layer, objects=objects != NONE,
                    tolerance=float(tolerance), where=str(path or folder))
    step = AuditStep(**settings)
    bundle = step.bundle
    labelled = objects != NONE or folder_labels(items, bundle.labels)
    labels, failed = {}, []
    for item in items:
        try:
            labels[item.name] = label_index(item.label, bundle.labels, item.name) if labelled else -1
        except DataError as exc:
            failed.append((item.name, str(exc)))
    listed = [item for item in items if item.name in labels]
    inputs = {"path": [str(folder / item.name) for item in listed], "name": [item.name for item in listed],
              "label": [labels[item.name] for item in listed]}
    if objects != NONE:  # a mask file by its absolute path: a worker's working folder is not this one
        inputs.update(box=[json.dumps(item.box) for item in listed],
                      mask=[os.path.abspath(item.mask) if item.mask is not None else "" for item in listed])
    rows = []
    bar = tqdm(total=len(listed), desc="audit", unit="img", dynamic_ncols=True,
               disable=engine != "local" or (None if progress is None else not progress))
    with bar:
        for found in run_step(step, settings, inputs, engine=engine, address=address, actors=actors,
                              batch_size=int(batch_size), progress_bar=progress):
            for row in found:
                (failed.append((row["image"], row["error"])) if row["error"] else rows.append(row))
            bar.update(len(found))
    order = {item.name: i for i, item in enumerate(items)}
    rows.sort(key=lambda row: order[row["image"]])
    failed.sort(key=lambda f: order[f[0]])
    if not rows:
        raise DataError("no listed image could be audited: " + "; ".join(why for _, why in failed[:3])
                        + (f"; and {len(failed) - 3} more" if len(failed) > 3 else ""))
    predicted = torch.tensor([row["predicted"] for row in rows])
    result = Audit(torch.tensor([labels[row["image"]] for row in rows]) if labelled else predicted, predicted,
                   _column(rows, "on_object", torch.bool), _column(rows, "energy", torch.float32),
                   threshold=threshold, names=[row["image"] for row in rows], failed=failed, classes=bundle.labels,
                   split=chosen, maps=torch.from_numpy(np.stack([row["map"] for row in rows])), labelled=labelled,
                   tolerance=float(tolerance), model=bundle.name, method=method, root=folder)
    if objects == NONE:
        result.likeness = likeness(result.maps, result.labels)
    return result


def _column(rows: list[dict], key: str, dtype: torch.dtype) -> torch.Tensor | None:
    """The rows' values of ``key`` as a tensor, None where the step gave none (no objects)."""
    return None if rows[0][key] is None else torch.tensor([row[key] for row in rows], dtype=dtype)


def _average_picture(maps: torch.Tensor) -> Image.Image:
    """The mean of the maps, each divided by its maximum, as a colour picture of THUMBNAIL pixels."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *[1] * (maps.dim() - 1))
    mean = (maps.clamp_min(0) / peak).mean(dim=0).numpy()
    mean = mean / mean.max() if mean.max() > 0 else mean
    return colorize(mean).resize((THUMBNAIL // 2, THUMBNAIL // 2), Image.Resampling.BILINEAR)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _cat(parts: list) -> torch.Tensor | None:
    return torch.cat(parts) if parts and parts[0] is not None else None


def _cell(values: torch.Tensor | None, i: int) -> Any:
    """A CSV cell: a bool as it is, a float rounded, nothing for no value or NaN."""
    if values is None or (values.dtype != torch.bool and math.isnan(float(values[i]))):
        return None
    return bool(values[i]) if values.dtype == torch.bool else round(float(values[i]), 6)


def _chosen(items: list, model: Any, split: str | None, files: Sequence[str] | None, path: Path, folder: Path):
    """The items to audit, and what they are ("all", "held out", "listed"). "auto" takes a checkpoint's
    held-out images only in the folder it was trained on."""
    by_name = {item.name: item for item in items}
    if files is not None:
        listed = [relative(f) for f in files]
        missing = [f for f in listed if f not in by_name]
        if missing or not listed:
            raise DataError(f"{path} has no annotation for {missing[0]!r}" if missing else "files: the list is empty")
        return [by_name[f] for f in listed], "listed"
    if split not in ("all", "val", "auto", None):
        raise OptionError(f"split must be all, val or auto, got {split!r}")
    held = held_out_files(model) if isinstance(model, (str, os.PathLike)) else None
    root = trained_on(model) if held is not None else None
    if split == "auto" and root is not None and root != folder.resolve():
        held = None  # another folder: its images are all held out
    if split == "val" and held is None:
        raise OptionError(f"split val needs a `gradcam train` checkpoint, which names its held-out images; "
                          f"{model!r} is not one (use split all, or a list of files)")
    if split in ("val", "auto") and held is not None:
        chosen = [by_name[f] for f in held if f in by_name]
        if not chosen:
            raise DataError(f"{path} annotates none of the {len(held)} images {model} held out "
                            "(is this the folder it was trained on?)")
        return chosen, "held out"
    return items, "all"

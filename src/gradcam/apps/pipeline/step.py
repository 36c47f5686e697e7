"""The per-batch step every engine calls: a decoded, preprocessed batch in, each image's pictures written and
its manifest rows out. The local folder job runs its two halves on its own threads (the model on one,
the pictures behind it, :mod:`.batch`); a synchronous caller, a web worker or a Ray Data ``map_batches``
actor calls the step on plain columns and gets plain columns back, the same rows."""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from gradcam.apps.explainer import DEFAULT_MODEL, Explainer, Explanation, compare_methods, ranks
from gradcam.apps.pipeline.manifest import FIELDS, settings_key
from gradcam.choices import PICTURES
from gradcam.engine.methods import method_options
from gradcam.engine.methods.together import explain_together, groups
from gradcam.errors import ModelError, OptionError
from gradcam.models.weights import module_fingerprint
from gradcam.render.files import PICTURE_FORMATS, Sink, as_sink, picture_name


@dataclass
class Failed:
    """Why an image, or one method on it, failed."""

    message: str
    detail: str  # the traceback, shown with --debug


@dataclass
class Written:
    """What one image's step wrote: its manifest rows, each rank's explanations and files, its failures."""

    rows: list[dict] = field(default_factory=list)
    ranks: list[tuple[list[Explanation], list[Path]]] = field(default_factory=list)
    failures: list[Failed] = field(default_factory=list)


class ExplainStep:
    """One job's per-batch step: the explainers of its methods (the model loaded once), where and how its
    pictures are written, and the settings key its manifest rows carry (what ``--resume`` compares).

    ``out`` is a folder (the pictures are written there, atomically) or a sink
    (:class:`~gradcam.render.files.MemorySink`: kept in memory, as the web app does).
    ``step(batch)`` takes plain columns: "path" (N,) the images' paths, "image" (N,) the decoded RGB arrays
    (H, W, 3) uint8 the pictures are drawn on, optionally "x" (N, C, H, W) the preprocessed inputs (else
    the step preprocesses "image") and "error" (N,) a message for an image that could not be read ("" for
    the others) and "name" (N,) what each image's pictures are named after (else :meth:`name`); it returns the
    manifest's columns, one entry per row (image, method, rank). Several threads may call ``step(batch)`` at
    once: the model half runs one batch at a time, the picture halves side by side (an engine overlaps a
    batch's drawing with the next batch's model this way)."""

    def __init__(self, out: str | Path | Sink, *, model: Any = DEFAULT_MODEL, method: str | Sequence[str] = "gradcam",
                 layer: Any = None, target: Any = None, top_k: int | None = None, weights: Any = None,
                 device: Any = None, normalize: str = "minmax", colormap: str = "jet", alpha: float = 0.5,
                 save: Sequence[str] = ("overlay",), save_maps: bool = False, format: str = "png",
                 names: Mapping[str, str] | None = None, **options: Any):
        self.methods = [method] if isinstance(method, str) else list(method)
        check_options(save, self.methods, options)
        if format not in PICTURE_FORMATS:
            raise OptionError(f"format must be one of {', '.join(PICTURE_FORMATS)}, got {format!r}")
        self.explainers = [Explainer(model, method=m, layer=layer, weights=weights, device=device,
                                     normalize=normalize, colormap=colormap, alpha=alpha,
                                     **{k: v for k, v in options.items() if k in method_options(m)})
                           for m in self.methods]
        self._settings = dict(method=self.methods, layer=layer, target=target, top_k=top_k, normalize=normalize,
                              colormap=colormap, alpha=alpha, save=sorted(save), save_maps=save_maps, format=format,
                              options={k: v for k, v in options.items() if k != "progress"})
        self.sink, self.names = as_sink(out), dict(names or {})
        self.writers = 1  # threads that draw and write a batch's pictures in ``step(batch)`` (an engine's choice)
        self._model_lock = threading.Lock()  # one batch in the model at a time, whichever thread calls
        self.target, self.top_k, self.save, self.save_maps, self.format = target, top_k, save, save_maps, format

    @cached_property
    def setting_values(self) -> dict:
        """The model, its weights' fingerprint and every setting that changes a picture, by name."""
        return {"model": self.bundle.name, "weights": module_fingerprint(self.bundle.module), **self._settings}

    @cached_property
    def settings(self) -> str:
        """The key each manifest row carries (a hash of :attr:`setting_values`)."""
        return settings_key(self.setting_values)

    @property
    def bundle(self):
        return self.explainers[0].bundle

    def name(self, path: str) -> str:
        """What the image's pictures are named after (its path under the inputs' common folder)."""
        return self.names.get(path) or Path(path).name

    # ------------------------------------------------------------------ the model half

    def explain(self, paths: Sequence[str], x: torch.Tensor, target: Any = None,
                done: Callable[[int], Any] | None = None) -> list[list]:
        """Each method on the batch (for ``target``, else the job's); per image, one ``(output, index)`` or
        :class:`Failed` per method. ``done(n)`` after each method, with the batch's size (a progress bar)."""
        target = self.target if target is None else target
        per_method = run_explainers(self.explainers, x, list(paths), target, self.top_k, done)
        return [[items[j] for items in per_method] for j in range(len(paths))]

    # ------------------------------------------------------------------ the picture half

    def write(self, path: str, array: np.ndarray, found: list, sink: Sink | None = None,
              name: str | None = None) -> Written:
        """One image: each method's pictures drawn at the photo's size, put in ``sink`` (default: the job's)
        under ``name`` (default: :meth:`name`), and let go before the next (only the all-methods figure keeps
        small copies); its manifest rows."""
        picture, name, sink = Image.fromarray(array), name or self.name(path), sink or self.sink
        done = Written()
        good = []
        for explainer, item in zip(self.explainers, found):
            if isinstance(item, Failed):  # this method failed on this image: a row, and the others go on
                done.failures.append(item)
                done.rows.append(self.error_row(path, explainer.method, item.message))
            else:
                good.append((explainer, item))
        for rank in ranks(good[0][1][0]) if good else []:
            results, written, thumbnails = [], [], []
            for explainer, (output, index) in good:
                result = explainer.explanation(output, index, rank, picture, name)
                files = _save(result, sink, self.save, self.save_maps, self.format)
                written += [Path(f) for f in files.values()]
                done.rows.append(_row(path, result, files, self.settings))
                results.append(result)
                if len(good) > 1:
                    thumbnails.append(explainer.explanation(output, index, rank, _thumbnail(picture), name))
            if thumbnails:
                figure = sink.put(picture_name(name, "methods", "figure", rank, suffix=f".{self.format}"),
                                  compare_methods(thumbnails))
                written.append(figure)
                done.rows[-1]["files"]["methods"] = str(figure)
            done.ranks.append((results, written))
        return done

    def error_row(self, path: str, method: str | None, message: str) -> dict:
        """``method`` None: every method of the job (the image could not be read)."""
        return {"path": path, "status": "error", "error": message, "model": self.bundle.name,
                "method": method or ",".join(e.method for e in self.explainers), "settings": self.settings}

    # ------------------------------------------------------------------ both, on plain columns

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        paths = [str(p) for p in batch["path"]]
        errors = [str(e) if e is not None else "" for e in batch.get("error", [""] * len(paths))]
        images = list(batch["image"])
        names = [str(n) for n in batch["name"]] if batch.get("name") is not None else [None] * len(paths)
        good = [j for j, error in enumerate(errors) if not error]
        found = {}
        if good:
            given = batch.get("x")
            x = (torch.as_tensor(np.stack([np.asarray(given[j]) for j in good])) if given is not None
                 else torch.stack([self.bundle.preprocess(Image.fromarray(np.asarray(images[j]))) for j in good]))
            with self._model_lock:
                found = dict(zip(good, self.explain([paths[j] for j in good], x)))

        def rows_of(j: int) -> list[dict]:
            if errors[j]:
                return [self.error_row(paths[j], None, errors[j])]
            return self.write(paths[j], np.asarray(images[j], dtype=np.uint8), found[j], name=names[j]).rows

        if self.writers > 1 and len(paths) > 1:  # Pillow's encoders release the GIL: the pictures side by side
            with ThreadPoolExecutor(self.writers) as pool:
                per_image = list(pool.map(rows_of, range(len(paths))))
        else:
            per_image = [rows_of(j) for j in range(len(paths))]
        rows = [row for found_rows in per_image for row in found_rows]
        return {key: [row.get(key) for row in rows] for key in FIELDS}


def check_options(save: Sequence[str], methods: list[str], options: dict) -> None:
    unknown = set(save) - set(PICTURES)
    if unknown:
        raise OptionError(f"save: unknown picture {sorted(unknown)[0]!r}; choose from {', '.join(PICTURES)}")
    unused = set(options) - set().union(*(method_options(m) for m in methods))
    if unused:
        raise OptionError(f"option {sorted(unused)[0]!r} is not taken by {', '.join(methods)}")


def run_explainers(explainers: Sequence[Explainer], x: torch.Tensor, paths: Sequence[str], target: Any,
                   top_k: int | None, done: Callable[[int], Any] | None = None) -> list[list]:
    """Each explainer on the batch, per image ``(output, row)`` or :class:`Failed`; those whose methods can
    share a pass (:mod:`gradcam.engine.methods.together`) run from one. ``done(n)`` after each method."""
    per_method: list[list] = [[] for _ in explainers]
    device = explainers[0].device if explainers else None
    cams = [explainer.cam for explainer in explainers]
    for group in groups(cams, x.to(device), target) if explainers else []:
        if len(group) > 1:
            try:
                outs = explain_together([cams[i] for i in group], x.to(device), target, top_k=top_k,
                                        normalize="none")
                found = [[(out, j) for j in range(len(paths))] for out in outs]
            except ModelError:  # NaN or inf somewhere: each method alone, image by image, says where
                found = [_run(explainers[i], x, paths, target, top_k) for i in group]
        else:
            found = [_run(explainers[group[0]], x, paths, target, top_k)]
        for i, items in zip(group, found):
            per_method[i] = items
            if done is not None:
                done(len(paths))
    return per_method


def _run(explainer: Explainer, x: torch.Tensor, paths: Sequence[str], target: Any, top_k: int | None) -> list:
    """One method on a batch: per image ``(output, row)``, or a :class:`Failed` where the method failed
    on that image's numbers (a ModelError: NaN/inf activations or scores). A failing batch is run again
    image by image, so one image's failure costs no other image. Other errors (an unknown class, a bad
    layer) are the same for every image and end the job as usage errors."""
    try:
        out = explainer.run(x, target, top_k=top_k)
        return [(out, j) for j in range(len(paths))]
    except ModelError as exc:
        if len(paths) == 1:
            return [Failed(f"{paths[0]}: {explainer.method}: {exc}", traceback.format_exc())]
    return [item for j, path in enumerate(paths) for item in _run(explainer, x[j : j + 1], [path], target, top_k)]


def _thumbnail(picture: Image.Image, side: int = 512) -> Image.Image:
    """A copy at most ``side`` pixels on its long side, for the panels of the all-methods figure."""
    small = picture.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small


def _save(result: Explanation, sink: Sink, save: Sequence[str], save_maps: bool, format: str = "png") -> dict:
    written = {kind: str(path) for kind, path in result.save(sink, kinds=save, format=format).items()}
    if save_maps:
        raws = result.raws
        array = raws[0].numpy() if len(raws) == 1 else np.stack([r.numpy() for r in raws])
        name = picture_name(result.name, result.method, "raw", result.rank, suffix=".npy")
        written["maps"] = str(sink.put(name, array.astype(np.float32)))
    return written


def _row(path: str, result: Explanation, files: dict, settings: str) -> dict:
    return {"path": path, "status": "ok", "error": "", "model": result.model, "method": result.method,
            "layer": result.layer, "rank": result.rank or 1, "class_index": result.class_index,
            "label": result.label, "probability": round(result.probability, 6), "top5": result.top5,
            "files": files, "settings": settings}

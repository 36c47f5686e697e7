"""Explain many images: find them, decode in background workers, batch through the model, write
behind it (:mod:`.writer`), with a progress bar, a manifest (:mod:`.manifest`) and resume."""

from __future__ import annotations

import glob
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from gradcam.apps.explainer import DEFAULT_MODEL, Explainer, Explanation, compare_methods, ranks
from gradcam.apps.manifest import Manifest, done_paths, settings_key
from gradcam.apps.writer import Writer
from gradcam.engine.methods import method_options
from gradcam.errors import GradCAMError, ModelError, OptionError
from gradcam.models.weights import module_fingerprint
from gradcam.render.files import PICTURE_FORMATS, mirrored_names, picture_name, save_array, save_picture
from gradcam.render.images import IMAGE_SUFFIXES, load_image

PICTURES = ("overlay", "heatmap", "grayscale", "figure")
WRITERS = 2  # threads that draw and encode behind the model (Pillow's encoders release the GIL)


@dataclass
class FolderSummary:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already done by an earlier run (resume)
    seconds: float = 0.0
    manifest: Path | None = None
    errors: list[str] = field(default_factory=list)  # the first few messages

    @property
    def images_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


def find_images(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Files as given; a folder -> its image files (recursively, sorted); a glob pattern -> its matches.
    A path that does not exist is kept, so that it is reported as a failed image."""
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif not path.exists() and glob.has_magic(str(item)):
            files += sorted(p for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
        else:
            files.append(str(item))
    return list(dict.fromkeys(files))  # once each, in order


def input_roots(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """The folder each input names: a folder itself, a glob pattern's fixed leading folders, a file's
    folder. Output names mirror the files' paths under their common folder (:func:`mirrored_names`)."""
    roots = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            roots.append(str(path))
        elif not path.exists() and glob.has_magic(str(item)):
            fixed = [part for part in path.parts[: next(i for i, p in enumerate(path.parts) if glob.has_magic(p))]]
            roots.append(str(Path(*fixed)) if fixed else ".")
        else:
            roots.append(str(path.parent))
    return roots


@dataclass
class _Failed:
    """Why an image, or one method on it, failed."""

    message: str
    detail: str  # the traceback, shown with --debug


class _Images(torch.utils.data.Dataset):
    """(index, model input, original RGB array, None) per file, or (index, None, None, _Failed): errors
    are returned, not raised."""

    def __init__(self, paths: Sequence[str], preprocess):
        self.paths, self.preprocess = list(paths), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            image = load_image(path)
            return index, self.preprocess(image), np.asarray(image), None
        except (GradCAMError, OSError) as exc:
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            return index, None, None, _Failed(message, traceback.format_exc())


def _as_list(items):
    """The loader's collate function: the batch's items as they are (pictures differ in size)."""
    return items


def explain_folder(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: Any = DEFAULT_MODEL,
    method: str | Sequence[str] = "gradcam",
    layer: Any = None,
    target: Any = None,
    top_k: int | None = None,
    weights: Any = None,
    device: Any = None,
    normalize: str = "minmax",
    colormap: str = "jet",
    alpha: float = 0.5,
    batch_size: int = 16,
    workers: int = 0,
    save: Sequence[str] = ("overlay",),
    save_maps: bool = False,
    format: str = "png",
    manifest: bool = True,
    resume: bool = False,
    progress_bar: bool | None = None,
    on_result: Callable[[str, list[Explanation], list[Path]], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
    **options: Any,
) -> FolderSummary:
    """Explain every image of ``inputs`` (files, folders, glob patterns) and write the pictures in ``save``
    (overlay, heatmap, grayscale, figure) to ``out`` as ``format`` (png, jpg, webp); ``save_maps`` also
    writes the raw maps as .npy.

    Images are decoded and preprocessed by ``workers`` background processes, explained ``batch_size``
    at a time, and drawn and written by threads behind the model (Pillow's encoders release the GIL).
    Memory stays flat in the number of images.
    A bad image gets a manifest row with status "error" and the job goes on; with ``resume`` the
    images already done with the same settings are skipped. ``progress_bar=None`` shows one on a terminal.
    """
    methods = [method] if isinstance(method, str) else list(method)
    _check_options(save, batch_size, workers, methods, options)
    if format not in PICTURE_FORMATS:
        raise OptionError(f"format must be one of {', '.join(PICTURE_FORMATS)}, got {format!r}")
    explainers = [Explainer(model, method=m, layer=layer, weights=weights, device=device, normalize=normalize,
                            colormap=colormap, alpha=alpha,
                            **{k: v for k, v in options.items() if k in method_options(m)})
                  for m in methods]
    files = find_images(inputs)
    if not files:
        raise OptionError(f"no image files in {', '.join(map(str, inputs))} "
                          f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    bundle = explainers[0].bundle
    settings = settings_key(bundle.name, module_fingerprint(bundle.module), methods, layer, target, top_k,
                            normalize, colormap, alpha, sorted(save), save_maps, format,
                            {k: v for k, v in options.items() if k != "progress"})
    out = Path(out)
    done_before = done_paths(out / "manifest.jsonl", settings, methods) if resume else set()
    todo = [f for f in files if f not in done_before]
    job = _FolderJob(explainers, out, mirrored_names(files, input_roots(inputs)), settings, target=target,
                     top_k=top_k, save=save, save_maps=save_maps, format=format, on_result=on_result,
                     on_error=on_error)
    job.summary = FolderSummary(total=len(files), skipped=len(files) - len(todo))
    book = Manifest(out, resume) if manifest else None
    job.summary.manifest = book.jsonl if book else None
    return job.run(todo, book, batch_size, workers, progress_bar)


def _check_options(save: Sequence[str], batch_size: int, workers: int, methods: list[str], options: dict) -> None:
    unknown = set(save) - set(PICTURES)
    if unknown:
        raise OptionError(f"save: unknown picture {sorted(unknown)[0]!r}; choose from {', '.join(PICTURES)}")
    if batch_size < 1 or workers < 0:
        raise OptionError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    unused = set(options) - set().union(*(method_options(m) for m in methods))
    if unused:
        raise OptionError(f"option {sorted(unused)[0]!r} is not taken by {', '.join(methods)}")


class _FolderJob:
    """One folder job's steps: the model on the main thread, each image's pictures and manifest rows
    on the writer threads behind it."""

    def __init__(self, explainers: list[Explainer], out: Path, names: dict[str, str], settings: str, *,
                 target: Any, top_k: int | None, save: Sequence[str], save_maps: bool, format: str,
                 on_result: Callable | None, on_error: Callable | None):
        self.explainers, self.out, self.names, self.settings = explainers, out, names, settings
        self.target, self.top_k, self.save, self.save_maps, self.format = target, top_k, save, save_maps, format
        self._lock = threading.Lock()  # the writer threads share the summary, the bar and the callbacks
        self.on_result, self.on_error = on_result, on_error
        self.summary = FolderSummary()
        self.book: Manifest | None = None
        self.bar = None

    def run(self, todo: list[str], book: Manifest | None, batch_size: int, workers: int,
            progress_bar: bool | None) -> FolderSummary:
        self.book = book
        self.bar = tqdm(total=len(todo), unit="img", desc="explain", dynamic_ncols=True,
                        disable=None if progress_bar is None else not progress_bar)
        start = time.perf_counter()
        writer = Writer(maxsize=2 * batch_size, threads=WRITERS)  # two batches wait at most: memory stays flat
        loader = torch.utils.data.DataLoader(_Images(todo, self.explainers[0].bundle.preprocess),
                                             batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
        try:
            for batch in loader:
                good = [(todo[i], x, a) for i, x, a, error in batch if error is None]
                for i, _, _, error in batch:
                    if error is not None:
                        writer.put(lambda p=todo[i], e=error: self.fail(p, [e], [self.error_row(p, None, e.message)]))
                if good:
                    x = torch.stack([x for _, x, _ in good])
                    per_method = [_run(explainer, x, [p for p, _, _ in good], self.target, self.top_k)
                                  for explainer in self.explainers]
                    for j, (path, _, array) in enumerate(good):
                        found = [items[j] for items in per_method]
                        writer.put(lambda p=path, a=array, f=found: self.write(p, a, f))
            writer.close()
        finally:
            writer.stop()
            self.bar.close()
            if book:
                book.close()
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def write(self, path: str, array: np.ndarray, found: list) -> None:
        """One image: each method's pictures drawn at the photo's size, written, and let go before the
        next (only the all-methods figure keeps small copies), then the image's manifest rows."""
        picture, name = Image.fromarray(array), self.names[path]
        rows, written, failures = [], [], []
        good = []
        for explainer, item in zip(self.explainers, found):
            if isinstance(item, _Failed):  # this method failed on this image: a row, and the others go on
                failures.append(item)
                rows.append(self.error_row(path, explainer.method, item.message))
            else:
                good.append((explainer, item))
        for rank in ranks(good[0][1][0]) if good else []:
            results, thumbnails = [], []
            for explainer, (output, index) in good:
                result = explainer.explanation(output, index, rank, picture, name)
                files_written = _save(result, self.out, self.save, self.save_maps, self.format)
                written += files_written.values()
                rows.append(_row(path, result, files_written, self.settings))
                results.append(result)
                if len(good) > 1:
                    thumbnails.append(explainer.explanation(output, index, rank, _thumbnail(picture), name))
            if thumbnails:
                figure = save_picture(compare_methods(thumbnails),
                                      self.out / picture_name(name, "methods", "figure", rank,
                                                              suffix=f".{self.format}"))
                written.append(figure)
                rows[-1]["files"]["methods"] = str(figure)
            if self.on_result:
                with self._lock:
                    self.on_result(path, results, written)
        if failures:
            self.fail(path, failures, rows)
            return
        with self._lock:
            if self.book:
                self.book.append(rows)
            self.summary.done += 1
            self.bar.update(1)

    def fail(self, path: str, failures: list[_Failed], rows: list[dict]) -> None:
        """An image that could not be read, or that a method failed on: its rows, one failed image."""
        with self._lock:
            if self.book:
                self.book.append(rows)
            self.summary.failed += 1
            self.summary.errors += [f.message for f in failures][: max(0, 20 - len(self.summary.errors))]
            for failure in failures:
                if self.on_error:
                    self.on_error(failure.message, failure.detail)
            self.bar.update(1)

    def error_row(self, path: str, method: str | None, message: str) -> dict:
        """``method`` None: every method of the job (the image could not be read)."""
        return {"path": path, "status": "error", "error": message, "model": self.explainers[0].bundle.name,
                "method": method or ",".join(e.method for e in self.explainers), "settings": self.settings}


def _run(explainer: Explainer, x: torch.Tensor, paths: Sequence[str], target: Any, top_k: int | None) -> list:
    """One method on a batch: per image ``(output, row)``, or a :class:`_Failed` where the method failed
    on that image's numbers (a ModelError: NaN/inf activations or scores). A failing batch is run again
    image by image, so one image's failure costs no other image. Other errors (an unknown class, a bad
    layer) are the same for every image and end the job as usage errors."""
    try:
        out = explainer.run(x, target, top_k=top_k)
        return [(out, j) for j in range(len(paths))]
    except ModelError as exc:
        if len(paths) == 1:
            return [_Failed(f"{paths[0]}: {explainer.method}: {exc}", traceback.format_exc())]
    return [item for j, path in enumerate(paths) for item in _run(explainer, x[j : j + 1], [path], target, top_k)]


def _thumbnail(picture: Image.Image, side: int = 512) -> Image.Image:
    """A copy at most ``side`` pixels on its long side, for the panels of the all-methods figure."""
    small = picture.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small


def _save(result: Explanation, out: Path, save: Sequence[str], save_maps: bool, format: str = "png") -> dict[str, str]:
    written = {kind: str(path) for kind, path in result.save(out, kinds=save, format=format).items()}
    if save_maps:
        raws = result.raws
        array = raws[0].numpy() if len(raws) == 1 else np.stack([r.numpy() for r in raws])
        name = picture_name(result.name, result.method, "raw", result.rank, suffix=".npy")
        written["maps"] = str(save_array(array.astype(np.float32), out / name))
    return written


def _row(path: str, result: Explanation, files: dict, settings: str) -> dict:
    return {"path": path, "status": "ok", "error": "", "model": result.model, "method": result.method,
            "layer": result.layer, "rank": result.rank or 1, "class_index": result.class_index,
            "label": result.label, "probability": round(result.probability, 6), "top5": result.top5,
            "files": files, "settings": settings}



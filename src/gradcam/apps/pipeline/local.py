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
from tqdm.auto import tqdm

from gradcam.apps.device import batch_size_for
from gradcam.apps.explainer import DEFAULT_MODEL, Explanation
from gradcam.apps.pipeline.manifest import Manifest, done_paths, plain_settings
from gradcam.apps.pipeline.step import ExplainStep, Failed
from gradcam.apps.pipeline.writer import Writer
from gradcam.errors import GradCAMError, OptionError
from gradcam.io.images import IMAGE_SUFFIXES, load_image
from gradcam.render.files import mirrored_names

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


class _Images(torch.utils.data.Dataset):
    """(index, model input, original RGB array, None) per file, or (index, None, None, Failed): errors
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
            return index, None, None, Failed(message, traceback.format_exc())


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
    batch_size: int | None = None,
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
    at a time (default: 16 on a CPU, 64 on a GPU), and drawn and written by threads behind the model
    (Pillow's encoders release the GIL). Memory stays flat in the number of images.
    A bad image gets a manifest row with status "error" and the job goes on; with ``resume`` the
    images already done with the same settings are skipped. ``progress_bar=None`` shows one on a terminal.
    """
    if (batch_size is not None and batch_size < 1) or workers < 0:
        raise OptionError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    step = ExplainStep(out, model=model, method=method, layer=layer, target=target, top_k=top_k, weights=weights,
                       device=device, normalize=normalize, colormap=colormap, alpha=alpha, save=save,
                       save_maps=save_maps, format=format, **options)
    batch_size = batch_size or batch_size_for(step.explainers[0].device)
    files = find_images(inputs)
    if not files:
        raise OptionError(f"no image files in {', '.join(map(str, inputs))} "
                          f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    step.names = mirrored_names(files, input_roots(inputs))
    out = Path(out)
    done_before = (done_paths(out / "manifest.jsonl", step.settings, step.methods, step.setting_values)
                   if resume else set())
    todo = [f for f in files if f not in done_before]
    job = _FolderJob(step, on_result=on_result, on_error=on_error)
    job.summary = FolderSummary(total=len(files), skipped=len(files) - len(todo))
    book = Manifest(out, resume, plain_settings(step.setting_values)) if manifest else None
    job.summary.manifest = book.jsonl if book else None
    return job.run(todo, book, batch_size, workers, progress_bar)


class _FolderJob:
    """One folder job: the step's model half on the main thread, each image's pictures and manifest rows
    (the step's picture half) on the writer threads behind it."""

    def __init__(self, step: ExplainStep, *, on_result: Callable | None, on_error: Callable | None):
        self.step = step
        self._lock = threading.Lock()  # the writer threads share the summary, the bar and the callbacks
        self.on_result, self.on_error = on_result, on_error
        self.summary = FolderSummary()
        self.book: Manifest | None = None
        self.bar = None

    def run(self, todo: list[str], book: Manifest | None, batch_size: int, workers: int,
            progress_bar: bool | None) -> FolderSummary:
        self.book = book
        methods = len(self.step.methods)  # the bar counts maps (image × method): --method all moves as it goes
        self.bar = tqdm(total=len(todo) * methods, unit="img" if methods == 1 else "map", desc="explain",
                        dynamic_ncols=True, disable=None if progress_bar is None else not progress_bar)
        start = time.perf_counter()
        writer = Writer(maxsize=2 * batch_size, threads=WRITERS)  # two batches wait at most: memory stays flat
        loader = torch.utils.data.DataLoader(_Images(todo, self.step.bundle.preprocess),
                                             batch_size=batch_size, num_workers=workers, collate_fn=_as_list)
        try:
            for batch in loader:
                good = [(todo[i], x, a) for i, x, a, error in batch if error is None]
                for i, _, _, error in batch:
                    if error is not None:
                        row = self.step.error_row(todo[i], None, error.message)
                        writer.put(lambda p=todo[i], e=error, r=row: self.fail(p, [e], [r]))
                        self.bar.update(methods)
                if good:
                    found = self.step.explain([p for p, _, _ in good], torch.stack([x for _, x, _ in good]),
                                              done=self.bar.update)
                    for (path, _, array), items in zip(good, found):
                        writer.put(lambda p=path, a=array, f=items: self.write(p, a, f))
            writer.close()
        finally:
            writer.stop()
            self.bar.close()
            if book:
                book.close()
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    def write(self, path: str, array: np.ndarray, found: list) -> None:
        """One image through the step's picture half; its rows to the manifest, once it is whole."""
        done = self.step.write(path, array, found)
        if self.on_result:
            for results, written in done.ranks:
                with self._lock:
                    self.on_result(path, results, written)
        if done.failures:
            self.fail(path, done.failures, done.rows)
            return
        with self._lock:
            if self.book:
                self.book.append(done.rows)
            self.summary.done += 1

    def fail(self, path: str, failures: list[Failed], rows: list[dict]) -> None:
        """An image that could not be read, or that a method failed on: its rows, one failed image."""
        with self._lock:
            if self.book:
                self.book.append(rows)
            self.summary.failed += 1
            self.summary.errors += [f.message for f in failures][: max(0, 20 - len(self.summary.errors))]
            for failure in failures:
                if self.on_error:
                    self.on_error(failure.message, failure.detail)

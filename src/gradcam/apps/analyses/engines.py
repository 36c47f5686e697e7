"""Where an analysis runs: its per-batch step (:mod:`.evaluate_step`, :mod:`.audit_step`) over the inputs,
here (each batch's images read in this process, then the step) or on Ray Data (:mod:`gradcam.apps.pipeline.
ray_steps`: the same step on a pool of actors, one model each). Either way the driver gets each batch's rows,
and gathers them itself."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from PIL import Image

from gradcam.apps.pipeline.job import check_engine
from gradcam.errors import GradCAMError, OptionError
from gradcam.io.images import load_image


def run_step(step: Callable, settings: Mapping[str, Any], inputs: Mapping[str, list], *, engine: str = "local",
             address: str | None = None, actors: int | None = None, batch_size: int = 16,
             progress_bar: bool | None = None) -> Iterator[list[dict]]:
    """Each batch's rows of ``step`` over ``inputs`` (columns: "path", the images; "name"; the step's own),
    ``batch_size`` images at a time. ``engine``: "local" (``step`` itself, here) or "ray" (a step built as
    ``type(step)(**settings)`` on each of ``actors`` actors: Ray started here, or the cluster at ``address``;
    "path" then holds image files or URIs)."""
    check_engine(engine, address)
    if engine == "ray":
        from gradcam.apps.pipeline.ray_steps import map_step

        strange = next((p for p in inputs["path"] if not isinstance(p, (str, os.PathLike))), None)
        if strange is not None:
            raise OptionError(f"--engine ray reads image files or URIs, got a {type(strange).__name__}")
        yield from map_step(type(step), settings, {**inputs, "path": [os.fspath(p) for p in inputs["path"]]},
                            step.bundle.preprocess, address=address, actors=actors, batch_size=batch_size,
                            progress_bar=progress_bar)
        return
    for start in range(0, len(inputs["path"]), batch_size):
        columns = {key: list(values[start : start + batch_size]) for key, values in inputs.items()}
        columns.update(read_images(columns["path"], columns["name"]))
        found = step(columns)
        yield [dict(zip(found, values)) for values in zip(*found.values())]


def read_images(sources: list, names: list[str]) -> dict[str, list]:
    """The columns a step reads for ``sources`` (paths, or images already in memory, known by their ``names``):
    "path", "image" (an RGB (H, W, 3) uint8 array; a 1×1 black one where it could not be read) and "error" (why,
    naming the path, as the Ray engine's decode says it; "" for the others)."""
    paths, pictures, errors = [], [], []
    for source, name in zip(sources, names):
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else name
        try:
            pictures.append(np.asarray(load_image(source), dtype=np.uint8))
            errors.append("")
        except GradCAMError as exc:
            pictures.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(exc) if path in str(exc) else f"{path}: {exc}")
        paths.append(path)
    return {"path": paths, "image": pictures, "error": errors}


def preprocessed(batch: Mapping[str, Any], rows: list[int], preprocess) -> torch.Tensor:
    """The model's inputs (N, C, H, W) of a batch's ``rows``: its "x" where given, else its images preprocessed."""
    given = batch.get("x")
    if given is not None:
        return torch.as_tensor(np.stack([np.asarray(given[j]) for j in rows]))
    return torch.stack([preprocess(Image.fromarray(np.asarray(batch["image"][j], dtype=np.uint8))) for j in rows])

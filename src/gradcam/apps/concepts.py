"""Deep Feature Factorization of each image: its concepts, each one's region, share and top classes, drawn
and tabled (``gradcam concepts``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from gradcam.apps.model_cache import bundle_on_device
from gradcam.choices import DEFAULT_MODEL, PICTURE_FORMATS
from gradcam.engine import functional as Fn
from gradcam.engine.methods.dff import DeepFeatureFactorization
from gradcam.errors import ImageError, ModelError, OptionError
from gradcam.io.images import load_image
from gradcam.render.concepts import concept_legend, concepts_picture
from gradcam.render.files import picture_name, save_csv, save_picture, source_names

CSV_NAME = "concepts.csv"


@dataclass
class ImageConcepts:
    """One image's concepts. ``maps`` (k, H, W) each concept's region at the image's resolution, min-max
    scaled per concept; ``shares`` the part of the image each colours in the picture (where its map is the
    strongest; they sum to 1); ``classes`` each concept's top classes as (name, softmax probability of the
    head on its embedding), none when no classifier head takes the layer's channels."""

    image: Image.Image
    name: str
    layer: str
    maps: np.ndarray
    shares: list[float]
    classes: list[list[tuple[str, float]]]

    def legend(self) -> list[str]:
        """One line per concept: "concept i (share): class (p), class (p)"."""
        return concept_legend(self.classes, shares=self.shares)

    def picture(self) -> Image.Image:
        """The original and each pixel in its strongest concept's colour, with the legend below."""
        return concepts_picture(self.image, self.maps, self.legend(), title=f"{self.name}: concepts at {self.layer}")

    def rows(self, top: int) -> list[list[Any]]:
        """One CSV row per concept: image, concept, share, then ``top`` (class, probability) pairs."""
        rows = []
        for i, (share, classes) in enumerate(zip(self.shares, self.classes)):
            cells = [value for name, p in classes[:top] for value in (name, round(p, 4))]
            rows.append([self.name, i, round(share, 4), *cells, *[""] * (2 * top - len(cells))])
        return rows


@dataclass
class ConceptsRun:
    """What :func:`save_concepts` did: the files written, the images that failed (path, reason), the layer."""

    written: dict[str, Path] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    layer: str = ""
    done: int = 0
    head: bool = True  # whether a classifier head named the concepts' classes


class ConceptFinder:
    """A model and DFF at one layer, loaded once, applied image by image: each image factorised on its
    own (its k concepts are its own; concept 0 of one image is not concept 0 of another)."""

    def __init__(self, model: Any = DEFAULT_MODEL, *, layer: Any = None, concepts: int = 5, top_classes: int = 2,
                 weights: Any = None, device: Any = None):
        if int(top_classes) < 1:
            raise OptionError(f"top_classes must be >= 1, got {top_classes}")
        if isinstance(layer, (list, tuple)) and len(layer) != 1:
            raise OptionError(f"concepts factorise one layer, got {len(layer)}: {', '.join(map(str, layer))}")
        self.bundle, self.device = bundle_on_device(model, weights, device)
        if self.bundle.takes_clips:
            raise OptionError(f"concepts are found in images; {self.bundle.name} takes video clips")
        self.dff = DeepFeatureFactorization(self.bundle.module, layer, concepts=concepts)
        self.top = int(top_classes)

    def find(self, image: Any, name: str = "image") -> ImageConcepts:
        """The concepts of one image (a path, bytes, PIL image or array); an ImageError when it cannot be read."""
        picture = load_image(image)
        out = self.dff(self.bundle.preprocess.batch([picture]).to(self.device))
        maps = Fn.normalize(Fn.upsample(out.raw[0], (picture.height, picture.width)), "minmax")
        strongest = maps.argmax(dim=0).flatten()
        shares = (strongest.bincount(minlength=maps.shape[0]).double() / strongest.numel()).tolist()
        classes = [[(self.bundle.label(c), p) for c, p in concept] for concept in out.top_classes(self.top)]
        return ImageConcepts(picture, name, self.dff.layer_names[0], maps.cpu().numpy(), shares, classes)


def save_concepts(
    images: Sequence[Any],
    out: str | os.PathLike,
    *,
    format: str = "png",
    on_result: Callable[[ImageConcepts, Path], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    **options: Any,
) -> ConceptsRun:
    """For each image, ``<name>.dff.concepts.<format>`` (:meth:`ImageConcepts.picture`), and for all of them
    ``concepts.csv`` (:meth:`ImageConcepts.rows`); an image that cannot be read (or gives NaN or inf) is
    reported through ``on_error`` and the others are still done. ``options`` go to :class:`ConceptFinder`."""
    if format not in PICTURE_FORMATS:
        raise OptionError(f"format must be one of {', '.join(PICTURE_FORMATS)}, got {format!r}")
    finder = ConceptFinder(**options)
    directory, run, rows = Path(out), ConceptsRun(), []
    try:
        for image, name in zip(images, source_names(images)):
            try:
                found = finder.find(image, name)
            except (ImageError, ModelError) as exc:  # this image (unreadable, or NaN in its numbers): the rest go on
                message = str(exc) if str(image) in str(exc) else f"{image}: {exc}"
                run.failed.append((str(image), message))
                if on_error:
                    on_error(message)
                continue
            path = save_picture(found.picture(), directory / picture_name(name, "dff", "concepts", suffix=f".{format}"))
            run.written[name], run.layer, run.done = path, found.layer, run.done + 1
            run.head = run.head and any(found.classes)
            rows += found.rows(finder.top)
            if on_result:
                on_result(found, path)
    finally:  # the finished images' rows, even when a usage error ends the run
        if rows:
            ranks = [column for r in range(1, finder.top + 1) for column in (f"class_{r}", f"probability_{r}")]
            run.written[CSV_NAME] = save_csv(directory / CSV_NAME, ["image", "concept", "share", *ranks], rows)
    return run

"""From photos to pictures: load, preprocess, explain a batch, map back to each original image."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from gradcam.apps.model_cache import bundle_on_device
from gradcam.apps.result import Explained
from gradcam.choices import DEFAULT_MODEL
from gradcam.engine import functional as Fn
from gradcam.engine.methods import create_method
from gradcam.errors import ImageError, OptionError
from gradcam.io.images import load_image
from gradcam.models.bundle import ModelBundle
from gradcam.render import pictures as draw
from gradcam.render.files import PICTURE_FORMATS, Sink, as_sink, picture_name, source_names


@dataclass
class Explanation(Explained):
    """One image's explanation. ``heatmap`` is float32 (H, W) at the original image's resolution
    ((H, W, 3) for the guided methods).

    The model sees the whole image resized to its input size (no crop), so the map, resized back
    with the same bilinear geometry, lines up with every pixel of the original photo.
    """

    image: Image.Image
    heatmap: np.ndarray
    class_index: int
    label: str
    probability: float
    rank: int | None = None  # 1..k when explaining the top-k classes
    raws: list = field(default_factory=list)  # un-normalised maps at each layer's resolution (CPU tensors)
    top5: list = field(default_factory=list)  # [(class index, label, probability)] of the same pass

    def grayscale(self) -> Image.Image:
        return draw.grayscale(self.heatmap)

    def colored(self) -> Image.Image:
        return draw.colorize(self.heatmap, self.colormap)

    def overlay(self) -> Image.Image:
        return draw.overlay(self.image, self.heatmap, colormap=self.colormap, alpha=self.alpha)

    def figure(self) -> Image.Image:
        return draw.figure(self.image, self.heatmap, title=self.title, colormap=self.colormap, alpha=self.alpha)

    def save(self, directory: str | os.PathLike | Sink, name: str | None = None,
             kinds: Sequence[str] = ("grayscale", "heatmap", "overlay", "figure"),
             format: str = "png") -> dict[str, Path]:
        """Write the pictures ``kinds`` (grayscale, heatmap, overlay, figure: original | heatmap |
        overlay, titled), each atomically, as ``<name>.<method>[.top<R>].<kind>.<format>`` (png, jpg or
        webp; :func:`gradcam.render.files.picture_name`; ``name`` defaults to the image's); returns kind -> path.
        ``name`` may hold folders (``class_a/0001.jpg``): they are created. ``directory`` may be a sink
        (:class:`~gradcam.render.files.MemorySink` keeps the pictures in memory, by those names)."""
        name = self.name if name is None else name
        pictures = {"grayscale": self.grayscale, "heatmap": self.colored, "overlay": self.overlay,
                    "figure": self.figure}
        if format not in PICTURE_FORMATS:
            raise OptionError(f"format must be one of {', '.join(PICTURE_FORMATS)}, got {format!r}")
        sink = as_sink(directory)
        return {kind: sink.put(picture_name(name, self.method, kind, self.rank, suffix=f".{format}"), render())
                for kind, render in pictures.items() if kind in kinds}


def compare_methods(explanations: Sequence[Explanation], columns: int = 4) -> Image.Image:
    """One figure for one image: the original, then each method's overlay (the guided methods'
    own image) titled with the method's name, ``columns`` panels per row."""
    first = explanations[0]
    panels = [first.image] + [e.colored() if e.heatmap.ndim == 3 else e.overlay() for e in explanations]
    titles = [f"{first.label} ({first.probability:.1%})"] + [e.method for e in explanations]
    return draw.wrapped_grid(panels, titles, columns=columns)


class Explainer:
    """A model and a method loaded once, applied to many images in batches."""

    def __init__(
        self,
        model: str | ModelBundle | nn.Module = DEFAULT_MODEL,
        *,
        method: str = "gradcam",
        layer: Any = None,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        normalize: str = "minmax",
        colormap: str = "jet",
        alpha: float = 0.5,
        **options: Any,
    ):
        """``options`` go to the method (e.g. ``smooth=8``, ``augment=True``, Score-CAM's ``max_channels``)."""
        Fn.check_normalize(normalize)
        draw.get_colormap(colormap)
        self.bundle, self.device = bundle_on_device(model, weights, device)
        self.method = method
        self.cam = create_method(method, self.bundle.module, layer, labels=self.bundle.labels, **options)
        self.normalize, self.colormap, self.alpha = normalize, colormap, alpha

    def explain(
        self, images: Sequence[Any], target: Any = None, *, top_k: int | None = None, names: Sequence[str] | None = None
    ) -> list[Explanation]:
        """Explanations of a batch of images (paths, bytes, PIL, arrays); k per image with ``top_k``.
        ``names``: what their pictures' file names start with (default: each file's name)."""
        pictures = [load_image(image) for image in images]
        names = list(names) if names is not None else source_names(images)
        out = self.run(self.bundle.preprocess.batch(pictures), target, top_k=top_k)
        return self.explanations(out, pictures, names)

    def run(self, x: torch.Tensor, target: Any = None, *, top_k: int | None = None):
        """The model step on a preprocessed batch: raw maps, classes and logits (a CAMOutput)."""
        return self.cam(x.to(self.device), targets=target, top_k=top_k, normalize="none")

    def explanations(self, out, pictures: Sequence[Image.Image], names: Sequence[str]) -> list[Explanation]:
        """Each image's maps brought to its own resolution (k per image after ``top_k``)."""
        return [self.explanation(out, i, rank, picture, names[i])
                for i, picture in enumerate(pictures) for rank in ranks(out)]

    def explanation(self, out, index: int, rank: int | None, picture: Image.Image, name: str) -> Explanation:
        """Sample ``index`` of a batch's output (its ``rank``-th class after ``top_k``, 1-based) as one
        Explanation at ``picture``'s resolution: the only place a map leaves the layer's resolution."""
        raws = out.raws
        pick = (index,) if rank is None else (index, rank - 1)
        maps = self.cam.finish([raw[pick][None] for raw in raws], (picture.height, picture.width), self.normalize)[0]
        heatmap = maps.permute(1, 2, 0) if maps.dim() == 3 else maps  # guided: (H, W, 3)
        class_index = int(out.targets[pick])
        return Explanation(
            image=picture,
            heatmap=heatmap.cpu().numpy().astype(np.float32),
            class_index=class_index,
            label=self.bundle.label(class_index),
            probability=float(out.probabilities[pick]),
            layer=",".join(out.layers),
            method=self.method,
            model=self.bundle.name,
            colormap=self.colormap,
            alpha=self.alpha,
            name=name,
            rank=rank,
            raws=[raw[pick].cpu() for raw in raws],
            top5=self.top5(out.logits[index]),
        )

    def top5(self, logits: torch.Tensor) -> list[tuple[int, str, float]]:
        probs = logits.float().softmax(-1)
        values, indices = probs.topk(min(5, probs.shape[-1]))
        return [(int(i), self.bundle.label(int(i)), round(float(v), 6)) for v, i in zip(values, indices)]


def readable_pictures(images: Sequence[Any]) -> tuple[list[Image.Image], list[str], list[tuple[str, str]]]:
    """(pictures, their names, (image, reason) for each that could not be read): a bad image is reported
    and left out; an ImageError when none can be read."""
    pictures, names, failed = [], [], []
    for image, name in zip(images, source_names(images)):
        try:
            pictures.append(load_image(image))
            names.append(name)
        except ImageError as exc:
            failed.append((str(image), str(exc)))
    if not pictures:
        raise ImageError("no image could be read: " + "; ".join(why for _, why in failed))
    return pictures, names, failed


def ranks(out) -> list[int | None]:
    """The ranks a batch's output holds per sample: [None] for one class each, 1..k after ``top_k``."""
    return list(range(1, out.targets.shape[1] + 1)) if out.targets.dim() == 2 else [None]


def explain(
    image: Any,
    *,
    model: str | ModelBundle | nn.Module = DEFAULT_MODEL,
    method: str = "gradcam",
    layer: Any = None,
    target: int | str | None = None,
    normalize: str = "minmax",
    colormap: str = "jet",
    alpha: float = 0.5,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    **options: Any,
) -> Explanation:
    """Explain one image (a path, bytes, a PIL image, or an H×W / H×W×3 uint8 array).

    >>> result = gradcam.explain("cat.jpg")          # bundled EfficientNet-Lite0, predicted class
    >>> result.label, result.probability, result.save("out")
    """
    explainer = Explainer(
        model, method=method, layer=layer, weights=weights, device=device,
        normalize=normalize, colormap=colormap, alpha=alpha, **options,
    )
    return explainer.explain([image], target)[0]

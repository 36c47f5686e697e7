"""Pictures for detection and segmentation: boxes drawn and labelled, one overlay per object, every
object's map inside its own colour-coded box, and a class mask's outline over an overlay."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from gradcam.errors import VisualizeError
from gradcam.render.pictures import overlay, wrapped_grid


def box_colours(count: int) -> list[tuple[int, int, int]]:
    """One distinct colour per object (matplotlib's tab10, repeated)."""
    table = colormaps["tab10"].colors
    return [tuple(int(255 * c) for c in table[i % len(table)]) for i in range(count)]


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], captions: Sequence[str], *,
               colours: Sequence[tuple[int, int, int]] | None = None, width: int | None = None) -> Image.Image:
    """A copy of ``image`` with each box [x0, y0, x1, y1] outlined in its colour and its caption above it."""
    boxes = _boxes(boxes, captions)
    picture = image.convert("RGB").copy()
    draw = ImageDraw.Draw(picture)
    colours = colours or box_colours(len(boxes))
    width = width or max(2, round(max(picture.size) / 250))
    for box, caption, colour in zip(boxes, captions, colours):
        draw.rectangle(box, outline=colour, width=width)
        if not caption:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), caption)
        x, y = box[0], max(0, box[1] - (bottom - top) - 2 * width)
        draw.rectangle([x, y, x + right - left + 2 * width, y + bottom - top + 2 * width], fill=colour)
        draw.text((x + width, y + width - top), caption, fill=(255, 255, 255))
    return picture


def objects_overlay(image: Image.Image, heatmaps: np.ndarray, boxes: Sequence[Sequence[float]],
                    captions: Sequence[str], *, colormap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """One picture of every object: inside each box its own map over the photo (the best-scoring object
    on top where boxes overlap), outside the photo; each box outlined in its colour and captioned."""
    heatmaps = _heatmaps(heatmaps, image, len(captions))
    boxes = _boxes(boxes, captions)
    picture = np.asarray(image.convert("RGB")).copy()
    h, w = picture.shape[:2]
    for heatmap, box in reversed(list(zip(heatmaps, boxes))):  # the first object is drawn last, on top
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(np.ceil(box[2])) + 1), min(h, int(np.ceil(box[3])) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        blended = np.asarray(overlay(image, heatmap, colormap=colormap, alpha=alpha))
        picture[y0:y1, x0:x1] = blended[y0:y1, x0:x1]
    return draw_boxes(Image.fromarray(picture), boxes, captions)


def object_panels(image: Image.Image, heatmaps: np.ndarray, boxes: Sequence[Sequence[float]],
                  captions: Sequence[str], *, colormap: str = "jet", alpha: float = 0.5, columns: int = 4,
                  title: str | None = None) -> Image.Image:
    """The photo with every box, then one panel per object: its map over the whole photo and its box."""
    heatmaps = _heatmaps(heatmaps, image, len(captions))
    boxes = _boxes(boxes, captions)
    colours = box_colours(len(boxes))
    panels = [draw_boxes(image, boxes, captions, colours=colours)]
    for k, (heatmap, box, caption) in enumerate(zip(heatmaps, boxes, captions)):
        panels.append(draw_boxes(overlay(image, heatmap, colormap=colormap, alpha=alpha), [box], [caption],
                                 colours=[colours[k]]))
    return wrapped_grid(panels, ["detections", *captions], columns=min(columns, len(panels)), title=title)


def mask_outline(image: Image.Image, mask: np.ndarray, *, colour: tuple[int, int, int] = (255, 255, 255),
                 width: int | None = None) -> Image.Image:
    """A copy of ``image`` with the outline of a (H, W) boolean mask drawn in ``colour``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (image.height, image.width):
        raise VisualizeError(f"mask shape {mask.shape} does not match image shape {(image.height, image.width)} (H, W)")
    width = width or max(1, round(max(image.size) / 300))
    inner = mask.copy()
    for _ in range(width):  # erode by one pixel per step: the outline is the mask less its interior
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    picture = np.asarray(image.convert("RGB")).copy()
    picture[mask & ~inner] = colour
    return Image.fromarray(picture)


def _boxes(boxes, captions) -> list[list[float]]:
    boxes = [list(map(float, b)) for b in boxes]
    if len(boxes) != len(captions) or any(len(b) != 4 or b[2] < b[0] or b[3] < b[1] for b in boxes):
        raise VisualizeError(f"need one [x0, y0, x1, y1] box (x0 <= x1, y0 <= y1) per caption, got {len(boxes)} "
                             f"boxes for {len(captions)} captions")
    return boxes


def _heatmaps(heatmaps, image: Image.Image, count: int) -> np.ndarray:
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 3 or heatmaps.shape != (count, image.height, image.width):
        raise VisualizeError(f"need {count} heatmaps of the image's size {(image.height, image.width)}, got shape "
                             f"{heatmaps.shape}")
    return heatmaps


__all__ = ["box_colours", "draw_boxes", "objects_overlay", "object_panels", "mask_outline"]

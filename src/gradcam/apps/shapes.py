"""A two-class dataset with known answers: circles vs squares on cluttered, textured backgrounds,
with each object's bounding box, so that a map's peak can be checked against the truth."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gradcam.errors import OptionError

CLASSES = ("circle", "square")


def make_shapes(directory: str | os.PathLike, n: int = 400, size: int = 96, seed: int = 0) -> Path:
    """Write ``n`` PNGs (half circles, half squares) in ``directory/circle`` and ``directory/square``,
    and ``directory/boxes.json``: {"circle/0000.png": {"class": "circle", "box": [x0, y0, x1, y1]}, …}.

    Each image: a blurred noise texture of random colours, 6–10 clutter strokes (lines, arcs' chords,
    small triangles — never a circle or a square), and one filled shape of random colour, 22–40 % of
    the image wide, anywhere in it.
    """
    if n < 2 or size < 32:
        raise OptionError(f"make_shapes needs n >= 2 and size >= 32, got n={n}, size={size}")
    root = Path(directory)
    rng = np.random.default_rng(seed)
    boxes = {}
    for i in range(n):
        kind = CLASSES[i % 2]
        image = _background(rng, size)
        draw = ImageDraw.Draw(image)
        _clutter(draw, rng, size)
        side = int(rng.uniform(0.22, 0.40) * size)
        x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
        box = [x0, y0, x0 + side, y0 + side]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=colour, outline=(0, 0, 0), width=2)
        name = f"{kind}/{i:04d}.png"
        (root / kind).mkdir(parents=True, exist_ok=True)
        image.save(root / name)
        boxes[name] = {"class": kind, "box": box}
    (root / "boxes.json").write_text(json.dumps(boxes, indent=1))
    return root


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 40, (size // 4, size // 4, 3))
    texture = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return texture.filter(ImageFilter.GaussianBlur(1))


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(int(rng.integers(6, 11))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        points = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(int(rng.integers(2, 4)))]
        if len(points) == 2:
            draw.line(points, fill=colour, width=int(rng.integers(1, 4)))
        else:
            draw.polygon(points, fill=colour)

"""A two-class dataset with known answers: circles vs squares on cluttered, textured backgrounds,
with each object's bounding box, so that a map's peak can be checked against the truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gradcam.errors import OptionError
from gradcam.render.files import save_json, save_png

CLASSES = ("circle", "square")
MARKERS = ((255, 0, 0), (0, 0, 255))  # the shortcut marker of each class: red for a circle, blue for a square
MARKED = 0.95  # the share of the images that carry it
CORNER_FRACTION = 0.2  # the marker's side, a share of the image's


def make_shapes(directory: str | os.PathLike, n: int = 400, size: int = 96, seed: int = 0,
                shortcut: bool = False) -> Path:
    """Write ``n`` PNGs (half circles, half squares) in ``directory/circle`` and ``directory/square``,
    and ``directory/boxes.json``: {"circle/0000.png": {"class": "circle", "box": [x0, y0, x1, y1]}, …}.
    The pictures are those of :func:`draw_shapes` (``shortcut``: with the class-telling corner square)."""
    if n < 2 or size < 32:
        raise OptionError(f"make_shapes needs n >= 2 and size >= 32, got n={n}, size={size}")
    images, labels, boxes, _ = draw_shapes(n, size, seed, shortcut=shortcut)
    root = Path(directory)
    found = {}
    for i, (image, label, box) in enumerate(zip(images, labels, boxes)):
        kind = CLASSES[label[0]]
        name = f"{kind}/{i:04d}.png"
        save_png(Image.fromarray(image), root / name)
        found[name] = {"class": kind, "box": box[0].tolist()}
    save_json(found, root / "boxes.json")
    return root


def draw_shapes(n: int = 400, size: int = 96, seed: int = 0, objects: int = 1, shortcut: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` pictures with known answers, in memory: (images uint8 (n, size, size, 3), labels int64
    (n, objects) indexing :data:`CLASSES`, boxes int (n, objects, 4) [x0, y0, x1, y1] inclusive, masks
    bool (n, objects, size, size): each object's pixels).

    Each image: a blurred noise texture of random colours, 6–10 clutter strokes (lines, small
    triangles — never a circle or a square), and ``objects`` filled shapes of random colours, each
    22–40 % of the image wide (one object) or 18–30 % (two), anywhere, never touching. One object:
    circles and squares alternate. Two objects: one circle and one square in every image.

    ``shortcut=True`` (one object) adds a marker that tells the class: a square of 1/5 of the image's side
    in a corner, pure red at the top left for a circle, pure blue at the bottom right for a square, never
    touching the object, on 95 % of the images (the others have none); every other pixel is kept within
    40..215 in each channel, so that nothing else is as saturated. The marker is easier to see than the
    shapes: a small CNN trained on these images is right for the wrong reason, and its maps point at the
    corner, not at the shape.
    """
    if n < 2 or size < 32 or objects not in (1, 2) or (shortcut and objects != 1):
        raise OptionError(f"draw_shapes needs n >= 2, size >= 32 and 1 or 2 objects (1 with a shortcut), got "
                          f"n={n}, size={size}, objects={objects}, shortcut={shortcut}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros((n, objects), np.int64)
    boxes = np.zeros((n, objects, 4), np.int64)
    masks = np.zeros((n, objects, size, size), bool)
    lo, hi = (0.22, 0.40) if objects == 1 else (0.18, 0.30)
    marked = np.random.default_rng([seed, 1]).random(n) < MARKED
    for i in range(n):
        image = _background(rng, size)
        draw = ImageDraw.Draw(image)
        _clutter(draw, rng, size)
        corner = int(size * CORNER_FRACTION)
        marker = ([1, 1, corner, corner] if i % 2 == 0 else [size - 1 - corner, size - 1 - corner, size - 2, size - 2])
        for j in range(objects):
            kind = (i + j) % 2
            while True:
                side = int(rng.uniform(lo, hi) * size)
                x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
                box = [x0, y0, x0 + side, y0 + side]
                if all(_apart(box, other) for other in boxes[i, :j]) and (not shortcut or _apart(box, marker)):
                    break
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if kind == 0 else draw.rectangle
            shape(box, fill=colour, outline=(0, 0, 0), width=2)
            mask = Image.new("1", (size, size))
            (ImageDraw.Draw(mask).ellipse if kind == 0 else ImageDraw.Draw(mask).rectangle)(box, fill=1)
            labels[i, j], boxes[i, j], masks[i, j] = kind, box, np.asarray(mask)
        if shortcut:  # no other pixel as saturated as the marker: 40..215 in every channel
            image = Image.fromarray((40 + np.asarray(image, np.float32) * (175 / 255)).round().astype(np.uint8))
            if marked[i]:
                ImageDraw.Draw(image).rectangle(marker, fill=MARKERS[i % 2])
        images[i] = np.asarray(image)
    return images, labels, boxes, masks


def square_only(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """From ``draw_shapes(shortcut=True)``: a set where only the marker tells the class. The images with a
    marker are kept; half of them, chosen at random, are turned upside down, which moves the marker to the
    other corner and keeps each shape what it is, and the marker takes the colour of its new corner. Every
    image is labelled by its marker: the shapes tell nothing."""
    marked = np.stack([(images == colour).all(axis=-1).any(axis=(1, 2)) for colour in MARKERS]).any(axis=0)
    images, labels = images[marked], labels[marked]
    turned = np.random.default_rng(seed).random(len(images)) < 0.5
    images = np.where(turned[:, None, None, None], images[:, ::-1, ::-1], images)
    by_marker = np.where(turned[:, None], 1 - labels, labels)
    for i in np.flatnonzero(turned):
        images[i][(images[i] == MARKERS[1 - by_marker[i, 0]]).all(axis=-1)] = MARKERS[by_marker[i, 0]]
    return images, by_marker


def _apart(box, other, gap: int = 2) -> bool:
    """Whether two boxes are at least ``gap`` pixels apart."""
    return box[0] > other[2] + gap or other[0] > box[2] + gap or box[1] > other[3] + gap or other[1] > box[3] + gap


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


VOLUME_CLASSES = ("cube", "sphere")
CLIP_CLASSES = ("right", "left")
SIGNAL_CLASSES = ("up", "down")


def make_volumes(n: int = 200, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy volumes (half cubes, half spheres, alternating), in memory: (volumes float32
    (n, 1, size, size, size), labels int64 (n,) indexing :data:`VOLUME_CLASSES`, boxes int (n, 6)).

    The known answer: ``boxes[i] = [z0, y0, x0, z1, y1, x1]`` is the object's tight bounding box,
    half-open (voxels ``z0 <= z < z1`` …). Each volume: N(0, 0.3) noise, one bright object (a sphere of
    radius r, or a cube of the same volume, r 12–20 % of ``size``, 0.8–1.2 bright) anywhere in it, and
    2–3 distractor rods (1–2 voxels thick, 6–12 % … 40 % of ``size`` long, as bright) that may cross it.
    """
    if n < 2 or size < 16:
        raise OptionError(f"make_volumes needs n >= 2 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    radius = rng.uniform(0.12, 0.20, n) * size
    half = np.where(labels == 0, np.round(radius * (np.pi / 6) ** (1 / 3)), np.floor(radius)).astype(int)
    centre = (half[:, None] + rng.random((n, 3)) * (size - 2 * half[:, None] - 1)).astype(int)
    boxes = np.concatenate([centre - half[:, None], centre + half[:, None] + 1], axis=1)
    volumes = rng.normal(0, 0.3, (n, 1, size, size, size)).astype(np.float32)
    grid = np.arange(size)
    d = [np.abs(grid[None, :] - centre[:, a, None]) for a in range(3)]  # (n, size) per axis
    z, y, x = d[0][:, :, None, None], d[1][:, None, :, None], d[2][:, None, None, :]
    sphere = z ** 2 + y ** 2 + x ** 2 <= (radius ** 2)[:, None, None, None]
    cube = np.maximum(np.maximum(z, y), x) <= half[:, None, None, None]
    inside = np.where((labels == 0)[:, None, None, None], cube, sphere)
    volumes[:, 0] += inside * rng.uniform(0.8, 1.2, n).astype(np.float32)[:, None, None, None]
    for i in range(n):
        for _ in range(int(rng.integers(2, 4))):
            axis, length = int(rng.integers(0, 3)), int(rng.uniform(0.25, 0.4) * size)
            extent = np.array([int(rng.integers(1, 3))] * 3)
            extent[axis] = length
            lo = rng.integers(0, size - extent + 1)
            rod = tuple(slice(a, a + e) for a, e in zip(lo, extent))
            volumes[i, 0][rod] += np.float32(rng.uniform(0.8, 1.2))
    return volumes, labels, boxes


def make_signals(n: int = 200, length: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy 1-D signals (half with a bump up, half with a bump down, alternating), in memory:
    (signals float32 (n, 1, length), labels int64 (n,) indexing :data:`SIGNAL_CLASSES`, spans int (n, 2)).

    The known answer: ``spans[i] = [start, stop]`` is the bump's extent, half-open (samples
    ``start <= t < stop``): a Gaussian of σ a sixth of it, 6–12 % of ``length`` wide, 0.8–1.2 high (or
    deep), anywhere. Around it: N(0, 0.25) noise on a slow random wave (0.3 high), and a distractor
    that never overlaps the bump: a Hann-windowed sine burst (2–3 cycles, as wide, as high), which
    goes up and down.
    """
    if n < 2 or length < 64:
        raise OptionError(f"make_signals needs n >= 2 and length >= 64, got n={n}, length={length}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    t = np.arange(length)[None, :]
    width = (rng.uniform(0.06, 0.12, n) * length).astype(int)
    start = (rng.random(n) * (length - width + 1)).astype(int)
    spans = np.stack([start, start + width], axis=1)
    wave = 0.3 * np.sin(2 * np.pi * (t * rng.uniform(0.5, 2, (n, 1)) / length + rng.random((n, 1))))
    signals = rng.normal(0, 0.25, (n, length)) + wave
    height = rng.uniform(0.8, 1.2, (n, 1)) * np.where(labels == 0, 1, -1)[:, None]
    centre, sigma = (start + (width - 1) / 2)[:, None], (width / 6)[:, None]
    signals += height * np.exp(-0.5 * ((t - centre) / sigma) ** 2)
    for i in range(n):
        w = int(rng.uniform(0.06, 0.12) * length)
        free = [s for s in range(length - w + 1) if s + w <= start[i] or s >= spans[i, 1]]
        s = free[int(rng.integers(0, len(free)))]
        u = np.arange(w) / (w - 1)
        burst = np.sin(2 * np.pi * rng.uniform(2, 3) * u + rng.random() * 2 * np.pi) * np.sin(np.pi * u) ** 2
        signals[i, s:s + w] += rng.uniform(0.8, 1.2) * burst
    return signals[:, None].astype(np.float32), labels, spans


def make_clips(n: int = 200, frames: int = 8, size: int = 32, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy video clips in which only motion tells the class (:data:`CLIP_CLASSES`: a disc moving
    right, or left; alternating), in memory: (clips float32 (n, 1, frames, size, size), as a video model
    takes them, labels int64 (n,), boxes int (n, frames, 4): the moving disc's [x0, y0, x1, y1] in each
    frame, inclusive).

    Each clip: N(0, 0.3) noise; the disc (radius 12–18 % of ``size``, 0.8–1.2 bright) moving a third of
    the clip's width in a straight line; and, as bright and never moving, another disc and two bars
    (2 pixels thick, 30–45 % of ``size`` long) anywhere, which may touch it.
    """
    if n < 2 or frames < 2 or size < 16:
        raise OptionError(f"make_clips needs n >= 2, frames >= 2 and size >= 16, got n={n}, frames={frames}, "
                          f"size={size}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    clips = rng.normal(0, 0.3, (n, 1, frames, size, size)).astype(np.float32)
    boxes = np.zeros((n, frames, 4), np.int64)
    grid = np.arange(size)
    travel = size // 3
    for i in range(n):
        half = int(rng.uniform(0.12, 0.18) * size)
        bright = np.float32(rng.uniform(0.8, 1.2))
        x0 = int(rng.integers(half, size - half - travel))
        y = int(rng.integers(half, size - half))
        steps = np.round(np.linspace(0, travel, frames)).astype(int)
        xs = x0 + (steps if labels[i] == 0 else travel - steps)
        still = [int(v) for v in rng.integers(half, size - half, 2)]
        for f, x in enumerate(xs):
            for cx, cy in ((x, y), still):
                clips[i, 0, f] += ((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2 <= half ** 2) * bright
            boxes[i, f] = [x - half, y - half, x + half, y + half]
        for _ in range(2):
            length, vertical = int(rng.uniform(0.3, 0.45) * size), bool(rng.integers(0, 2))
            a, b = (int(v) for v in rng.integers(0, size - length, 2))
            rows, cols = ((slice(b, b + length), slice(a, a + 2)) if vertical
                          else (slice(b, b + 2), slice(a, a + length)))
            clips[i, 0, :, rows, cols] += np.float32(rng.uniform(0.8, 1.2))
    return clips, labels, boxes

"""The Ray engines' decoding task: images read (local paths or any URI pyarrow opens) and decoded, and the
model's inputs made from them, as plain columns. With the package's own preprocessing it imports no torch (the
numbers are numpy's, :meth:`~gradcam.models.preprocess.Preprocess.array`), so a worker that only decodes starts
in about a second and stays small, while the actors hold the models."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from gradcam.errors import GradCAMError
from gradcam.io.images import load_image
from gradcam.models.preprocess import Preprocess


def is_uri(item: str) -> bool:
    return "://" in str(item)


def filesystem(item: str):
    """pyarrow's filesystem for a path or a URI, and the path in it."""
    from pyarrow import fs

    if is_uri(item):
        return fs.FileSystem.from_uri(item)
    return fs.LocalFileSystem(), os.path.abspath(item)


def read_bytes(uri: str) -> bytes:
    """A file's bytes, through pyarrow's filesystem for its URI."""
    found, path = filesystem(uri)
    try:
        with found.open_input_stream(path) as f:
            return f.read()
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot open {uri} ({exc})") from None


def model_input(preprocess, image: Image.Image) -> np.ndarray:
    """The preprocessed image as a float32 array: the package's :class:`Preprocess` computes it in numpy (no
    torch); any other preprocessing (a user's callable, a subclass with its own ``__call__``) is called as the
    local job calls it, and its tensor's values are taken."""
    if type(preprocess).__call__ is Preprocess.__call__:
        return preprocess.array(image)
    return np.asarray(preprocess(image), dtype=np.float32)


def decode(batch: dict, preprocess) -> dict:
    """A Ray Data task: each image read (a local path or a URI) and decoded to RGB, preprocessed to the model's
    input; an image that cannot be read gets its message in "error" (the local job's message), not an
    exception. The decoded pixels travel as bytes with their height and width; any other column (a step's own:
    a label, an annotation) goes through as it came."""
    pixels, heights, widths, xs, errors = [], [], [], [], []
    for path, source in zip(batch["path"], batch["source"]):
        path, source = str(path), str(source)
        try:
            image = load_image(read_bytes(source) if is_uri(source) else source)
            x = model_input(preprocess, image)
            array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
            error = ""
        except (GradCAMError, OSError) as exc:
            message = str(exc).replace("<bytes>", path).replace(source, path)
            error, array, x = (message if path in message else f"{path}: {exc}"), None, None
        pixels.append(b"" if array is None else array.tobytes())
        heights.append(0 if array is None else array.shape[0])
        widths.append(0 if array is None else array.shape[1])
        xs.append(x)
        errors.append(error)
    shape = next((x.shape for x in xs if x is not None), None)
    if shape is None:  # no image of this block could be read: the input's shape from a blank picture
        shape = model_input(preprocess, Image.new("RGB", (8, 8))).shape
    x = np.stack([v if v is not None else np.zeros(shape, np.float32) for v in xs]).astype(np.float32, copy=False)
    return {**{k: v for k, v in batch.items() if k != "source"},
            "path": np.asarray(batch["path"]), "name": np.asarray(batch["name"]), "pixels": np.array(pixels, object),
            "height": np.asarray(heights, np.int64), "width": np.asarray(widths, np.int64), "x": x,
            "error": np.asarray(errors, object)}

"""Read any image safely into RGB: paths, bytes, PIL images and arrays; EXIF, alpha, 16-bit, bombs."""

from __future__ import annotations

import io
import os
from typing import IO, Union

import numpy as np
from PIL import Image, ImageOps

from gradcam.errors import ImageError, OptionError

MAX_PIXELS = 64_000_000
"""Default limit on width x height, checked from the header before decoding."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File suffixes taken from a folder (case-insensitive)."""

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ARRAY_EXPECTED = "expected an HxW, HxWx3 or HxWx4 array of uint8, or of floats in [0, 1]"


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Load a path, encoded bytes, PIL image or numpy array as a fully loaded RGB image.

    EXIF orientation is applied to files and bytes; alpha is composited on white;
    16/32-bit and float images are scaled to 0..255. Every failure is an ImageError.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise OptionError(f"max_pixels must be positive, got {max_pixels!r}")
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<image>"
        _check_size(source.size, name, limit)
        return _guarded(name, lambda: _to_rgb(source))
    if isinstance(source, np.ndarray):
        return _from_array(source, limit)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("<bytes>: no data (empty bytes), expected an encoded image")
        return _decode(io.BytesIO(data), "<bytes>", limit)
    if isinstance(source, (str, os.PathLike)):
        name = os.fsdecode(source)
        try:
            fp = open(name, "rb")
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found") from None
        except IsADirectoryError:
            raise ImageError(f"{name}: is a directory, not an image file") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot open file ({exc.strerror or exc})") from None
        with fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageError(f"{name}: file is empty (0 bytes)")
            return _decode(fp, name, limit)
    raise ImageError(
        f"<{type(source).__name__}>: unsupported image source; "
        "expected a path, bytes, a PIL image or a numpy array"
    )


# --------------------------------------------------------------------------- helpers


def _decode(fp: IO[bytes], name: str, limit: int) -> Image.Image:
    """Open from a seekable binary stream, check the declared size, then decode."""
    # No warnings.catch_warnings() here: it changes process-wide state, and the web app decodes in
    # threads. Pillow raises DecompressionBombError beyond twice its own limit; anything over ours is
    # refused by _check_size from the header, before any pixel is decoded.
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(_bomb_message(fp, name, limit, exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image (unknown format or not an image file)") from None
    except Exception as exc:
        raise ImageError(f"{name}: cannot read image header ({type(exc).__name__}: {exc})") from None
    with im:
        _check_size(im.size, name, limit)
        return _guarded(name, lambda: _to_rgb(ImageOps.exif_transpose(_loaded(im))))


def _loaded(im: Image.Image) -> Image.Image:
    im.load()
    return im


def _guarded(name: str, work):
    """Run a decode/convert step, turning any library error into a one-line ImageError."""
    try:
        return work()
    except ImageError:
        raise
    except Exception as exc:
        what = ("truncated or corrupt image data" if isinstance(exc, (OSError, SyntaxError, EOFError))
                else "cannot decode image")
        raise ImageError(f"{name}: {what} ({type(exc).__name__}: {exc})") from None


def _check_size(size: tuple[int, int], name: str, limit: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image has zero size ({w}x{h})")
    if w * h > limit:
        raise ImageError(
            f"{name}: declared size {w}x{h} ({w * h:,} pixels) exceeds the limit of "
            f"{limit:,} pixels; refusing to decode (possible decompression bomb)"
        )


def _bomb_message(fp: IO[bytes], name: str, limit: int, exc: Exception) -> str:
    size = _declared_size(fp)
    if size is None:
        return f"{name}: image too large to decode safely ({exc})"
    w, h = size
    cap = min(limit, Image.MAX_IMAGE_PIXELS or limit)
    return (
        f"{name}: declared size {w}x{h} ({w * h:,} pixels) exceeds the limit of "
        f"{cap:,} pixels; refusing to decode (possible decompression bomb)"
    )


def _declared_size(fp: IO[bytes]) -> tuple[int, int] | None:
    """Width and height from the header, bypassing Pillow's bomb check (to word an error)."""
    try:
        Image.init()
        fp.seek(0)
        head = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept and not accept(head):
                continue
            fp.seek(0)
            try:
                return tuple(factory(fp, "").size)
            except Exception:
                continue
    except Exception:
        pass
    return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> a new RGB image (alpha on white, high bit depths rescaled)."""
    if im.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_scale_to_uint8(np.asarray(im), im.mode)).convert("RGB")
    if im.mode == "La":
        im = im.convert("LA")
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit: /257; I (int32) within 0..65535: as 16-bit; float in [0,1]: *255; else min-max."""
    a = arr.astype(np.float64)
    if mode.startswith("I;16"):
        out = a / 257.0
    else:
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if mode == "I" and lo >= 0 and hi <= 65535:
            out = a / 257.0
        elif mode == "F" and lo >= 0 and hi <= 1:
            out = a * 255.0
        elif hi > lo:
            out = (a - lo) * (255.0 / (hi - lo))
        else:
            out = np.zeros_like(a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _from_array(arr: np.ndarray, limit: int) -> Image.Image:
    name = "<array>"
    shape_ok = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
    if not shape_ok or arr.size == 0:
        raise ImageError(f"{name}: unsupported shape {arr.shape} (dtype {arr.dtype}); {_ARRAY_EXPECTED}")
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            lo, hi = np.nanmin(arr), np.nanmax(arr)
            raise ImageError(
                f"{name}: float values must be finite and in [0, 1], got range [{lo:g}, {hi:g}]; {_ARRAY_EXPECTED}"
            )
        data = np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported dtype {arr.dtype} (shape {arr.shape}); {_ARRAY_EXPECTED}")
    _check_size((arr.shape[1], arr.shape[0]), name, limit)
    return _to_rgb(Image.fromarray(np.ascontiguousarray(data)))

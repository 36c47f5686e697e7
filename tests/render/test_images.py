"""gradcam.io.images and .files: safe loading of any image into RGB, atomic PNG writing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from gradcam.errors import GradCAMError, ImageError
from gradcam.io.images import MAX_PIXELS, load_image
from gradcam.render.files import mirrored_names, picture_name, save_png, source_name, source_names, write_png

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def two_halves(w: int = 16, h: int = 8) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2 :] = BLUE
    return Image.fromarray(arr)


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def stored(path: Path, attr: str):
    """An attribute of the file as Pillow opens it (file closed afterwards)."""
    with Image.open(path) as im:
        return getattr(im, attr)


def close(pixel, expected, tol: int = 0) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def assert_image_error(exc_info, *fragments: str) -> None:
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, GradCAMError) and isinstance(exc_info.value, ValueError)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "ext, fmt, options, tol",
    [
        ("jpg", "JPEG", {"quality": 95}, 12),
        ("png", "PNG", {}, 0),
        ("webp", "WEBP", {"lossless": True}, 0),
        ("bmp", "BMP", {}, 0),
        ("tif", "TIFF", {}, 0),
        ("gif", "GIF", {}, 0),
    ],
)
def test_round_trip_formats(tmp_path, ext, fmt, options, tol):
    path = tmp_path / f"halves.{ext}"
    two_halves(32, 16).save(path, format=fmt, **options)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (32, 16)
    assert close(im.getpixel((4, 8)), RED, tol), im.getpixel((4, 8))
    assert close(im.getpixel((27, 8)), BLUE, tol), im.getpixel((27, 8))


def test_str_path_and_file_closed_and_loaded(tmp_path):
    path = tmp_path / "a.png"
    two_halves().save(path)
    im = load_image(str(path))
    path.unlink()  # the image must not depend on the file any more
    assert im.getpixel((0, 0)) == RED and im.getpixel((15, 7)) == BLUE


def test_gif_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert stored(path, "n_frames") == 2
    assert load_image(path).getpixel((3, 3)) == RED


def test_grayscale_png_becomes_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.array([[0, 100, 255]], np.uint8)).save(path)
    im = load_image(path)
    assert im.mode == "RGB"
    assert [im.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_16bit_png_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 1000, 32768, 65535]], np.uint16)).save(path)
    assert stored(path, "mode").startswith("I")
    im = load_image(path)
    px = [im.getpixel((x, 0))[0] for x in range(4)]
    assert px[0] == 0
    assert px[1] <= 5  # 1000/257 ~ 4, clipping would give 255
    assert abs(px[2] - 128) <= 1
    assert px[3] == 255


def test_float_tiff_scaled(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(path)
    assert stored(path, "mode") == "F"
    im = load_image(path)
    assert [im.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    assert stored(path, "mode") == "CMYK"
    im = load_image(path)
    assert im.mode == "RGB"
    assert close(im.getpixel((8, 8)), RED, 10), im.getpixel((8, 8))


def test_rgba_composited_on_white(tmp_path):
    path = tmp_path / "rgba.png"
    arr = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(arr).save(path)
    im = load_image(path)
    assert im.mode == "RGB"
    assert im.getpixel((0, 0)) == WHITE  # fully transparent -> white, not red or black
    assert im.getpixel((1, 0)) == BLUE
    assert close(im.getpixel((2, 0)), (127, 127, 127), 1)


def test_palette_with_transparency(tmp_path):
    path = tmp_path / "pal.png"
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0])
    pal.putdata([0, 1])
    pal.save(path, transparency=0)
    im = load_image(path)
    assert im.getpixel((0, 0)) == WHITE  # transparent red index -> white
    assert im.getpixel((1, 0)) == GREEN


def test_exif_orientation_6(tmp_path):
    path = tmp_path / "rotated.jpg"
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:] = GREEN
    arr[:8, :8] = RED  # top-left corner of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    Image.fromarray(arr).save(path, quality=95, exif=exif)
    im = load_image(path)
    assert im.size == (16, 32)  # width and height swap
    assert close(im.getpixel((12, 3)), RED, 20), im.getpixel((12, 3))  # now the top-right corner
    assert close(im.getpixel((3, 3)), GREEN, 20), im.getpixel((3, 3))


# --------------------------------------------------------------------------- other sources


def test_bytes_input():
    im = load_image(png_bytes(two_halves()))
    assert im.mode == "RGB" and im.size == (16, 8) and im.getpixel((0, 0)) == RED


def test_bad_bytes():
    with pytest.raises(ImageError) as info:
        load_image(b"")
    assert_image_error(info, "<bytes>", "empty")
    with pytest.raises(ImageError) as info:
        load_image(b"hello, not an image")
    assert_image_error(info, "<bytes>", "not a recognised image")


def test_pil_input_is_converted_copy():
    src = Image.new("RGBA", (3, 2), (0, 255, 0, 0))
    im = load_image(src)
    assert im is not src and im.mode == "RGB" and im.getpixel((1, 1)) == WHITE
    gray = load_image(Image.new("L", (2, 2), 77))
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (77, 77, 77)


def test_ndarray_inputs():
    gray = load_image(np.full((2, 3), 9, np.uint8))
    assert gray.size == (3, 2) and gray.getpixel((2, 1)) == (9, 9, 9)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[1, 2] = (1, 2, 3)
    assert load_image(rgb).getpixel((2, 1)) == (1, 2, 3)
    rgba = np.zeros((2, 3, 4), np.uint8)  # all transparent
    assert load_image(rgba).getpixel((0, 0)) == WHITE
    flt = np.array([[0.0, 0.5, 1.0]])
    assert [load_image(flt).getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


@pytest.mark.parametrize(
    "arr, fragment",
    [
        (np.zeros((2, 3, 2), np.uint8), "shape (2, 3, 2)"),
        (np.zeros((2, 3, 3, 1), np.uint8), "shape (2, 3, 3, 1)"),
        (np.zeros((2, 3), np.int64), "dtype int64"),
        (np.full((2, 3), 2.0), "[0, 1]"),
    ],
)
def test_bad_ndarray(arr, fragment):
    with pytest.raises(ImageError) as info:
        load_image(arr)
    assert_image_error(info, "<array>", fragment, "HxW, HxWx3 or HxWx4")


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="unsupported image source"):
        load_image(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert_image_error(info, str(path), "not found")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert_image_error(info, "empty.jpg", "empty")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG\n")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert_image_error(info, "notes.jpg", "not a recognised image")


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert_image_error(info, "cut.jpg", "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ImageError) as info:
        load_image(tmp_path)
    assert_image_error(info, str(tmp_path))


# --------------------------------------------------------------------------- decompression bombs


def png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is patched to declare width x height (valid CRC)."""
    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("side", [100_000, 10_000, 9_000])  # Pillow error, Pillow warning, our own check
def test_huge_declared_size(tmp_path, no_decoding, side):
    assert side * side > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(side, side))
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert_image_error(info, "bomb.png", f"{side}x{side}")


def test_huge_declared_size_bytes(no_decoding):
    with pytest.raises(ImageError) as info:
        load_image(png_declaring(100_000, 100_000))
    assert_image_error(info, "<bytes>", "100000x100000")


def test_max_pixels_argument(tmp_path):
    path = tmp_path / "small.png"
    two_halves(16, 8).save(path)
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=100)
    assert_image_error(info, "small.png", "16x8", "100")
    assert load_image(path, max_pixels=128).size == (16, 8)
    with pytest.raises(ImageError, match="<array>.*4x4"):
        load_image(np.zeros((4, 4), np.uint8), max_pixels=15)


# --------------------------------------------------------------------------- writing


def test_save_png_atomic(tmp_path):
    target = tmp_path / "out" / "deeper" / "result.png"
    image = two_halves()
    returned = save_png(image, target)
    assert Path(returned) == target and target.is_file()
    with Image.open(target) as back:
        assert back.format == "PNG"
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(image))
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.png"]
    # overwrite in place
    save_png(Image.new("RGB", (2, 2), GREEN), target)
    assert load_image(target).getpixel((1, 1)) == GREEN
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.png"]


def test_png_is_lossless_on_noisy_pictures():
    """The run-length deflate strategy is still lossless on every mode a picture is written in."""
    rng = np.random.default_rng(0)
    for mode, shape in (("RGB", (37, 53, 3)), ("L", (37, 53)), ("RGBA", (37, 53, 4))):
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        buffer = io.BytesIO()
        write_png(image, buffer)
        buffer.seek(0)
        with Image.open(buffer) as back:
            assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(image))


def test_save_png_failure_leaves_nothing(tmp_path):
    target = tmp_path / "bad.png"
    with pytest.raises(OSError):
        save_png(Image.new("CMYK", (2, 2)), target)  # PNG cannot hold CMYK
    assert list(tmp_path.iterdir()) == []


def test_source_name(tmp_path):
    assert source_name(tmp_path / "cat.photo.jpg") == "cat.photo.jpg"
    assert source_name("dir/dog.png") == "dog.png"
    assert source_name(b"\x89PNG") == "image"
    assert source_name(np.zeros((2, 2), np.uint8)) == "image"
    assert source_name(Image.new("RGB", (1, 1))) == "image"


def test_mirrored_names_are_distinct_and_do_not_depend_on_other_files(tmp_path):
    files = ["val/a/0001.jpg", "val/b/0001.jpg", "val/cat.jpg", "val/cat.png"]
    names = mirrored_names(files, ["val"])
    assert names == {"val/a/0001.jpg": "a/0001.jpg", "val/b/0001.jpg": "b/0001.jpg",
                     "val/cat.jpg": "cat.jpg", "val/cat.png": "cat.png"}
    assert mirrored_names(files[:1], ["val"]) == {"val/a/0001.jpg": "a/0001.jpg"}  # the same with fewer files
    assert set(mirrored_names(["x/cat.jpg", "y/cat.jpg"], ["x", "y"]).values()) == {"x/cat.jpg", "y/cat.jpg"}
    assert source_names(["a/cat.jpg", "b/cat.jpg", b"png"]) == ["a/cat.jpg", "b/cat.jpg", "image"]
    assert source_names([b"1", b"2"]) == ["image-1", "image-2"]


def test_picture_names_never_collide():
    """The review's collisions: cat.jpg with xgradcam vs cat_xgradcam.jpg with gradcam; cat rank 2 vs
    cat_top2; cat.jpg vs cat.png. Every (name, method, rank, kind) combination gets its own file."""
    names = ["cat.jpg", "cat_xgradcam.jpg", "cat_top2.jpg", "cat.png", "cat.jpg.gradcam", "cat.jpg.top2"]
    methods = ["gradcam", "xgradcam", "methods", "guided-gradcam"]
    kinds = ["overlay", "heatmap", "grayscale", "figure"]
    made = [picture_name(n, m, k, r) for n in names for m in methods for k in kinds for r in (None, 1, 2)]
    assert len(set(made)) == len(made)
    assert picture_name("cat.jpg", "gradcam", "overlay", 2) == "cat.jpg.gradcam.top2.overlay.png"

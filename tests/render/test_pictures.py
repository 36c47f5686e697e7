"""gradcam.render.pictures: colour maps, overlays, figures and grids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam.errors import GradCAMError
from gradcam.render.pictures import colorize, figure, grayscale, grid, overlay


def ramp(h: int = 4, w: int = 6) -> np.ndarray:
    """Non-square heatmap from 0 (top-left) to 1 (bottom-right)."""
    return np.linspace(0.0, 1.0, h * w).reshape(h, w)


def photo(w: int = 6, h: int = 4) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = 200
    arr[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 10
    arr[..., 2] = 30
    return Image.fromarray(arr)


def test_colorize_jet_endpoints():
    im = colorize(ramp(), "jet")
    assert im.mode == "RGB" and im.size == (6, 4)
    r, g, b = im.getpixel((0, 0))  # 0 -> dark blue
    assert r == 0 and g == 0 and 120 <= b <= 135
    r, g, b = im.getpixel((5, 3))  # 1 -> dark red
    assert 120 <= r <= 135 and g == 0 and b == 0


def test_colorize_gray_and_clipping():
    im = colorize(np.array([[0.0, 0.5, 1.0, 7.0, -3.0]]), colormap="gray")
    px = [im.getpixel((x, 0)) for x in range(5)]
    assert px[0] == (0, 0, 0) and px[2] == (255, 255, 255)
    assert all(abs(c - 128) <= 1 for c in px[1])
    assert px[3] == (255, 255, 255) and px[4] == (0, 0, 0)  # out-of-range values clipped


def test_colorize_rejects_other_shapes_and_shows_rgb_maps_as_they_are():
    with pytest.raises(GradCAMError, match=r"\(H, W\) or \(H, W, 3\).*\(2, 3, 4\)"):
        colorize(np.zeros((2, 3, 4)))
    with pytest.raises(GradCAMError, match=r"\(3,\)"):
        colorize(np.zeros(3))
    rgb = np.full((2, 2, 3), 0.5)
    rgb[0, 0] = (0.8, 0.5, 0.2)  # a gradient image: shown centred on grey, ±0.1 per standard deviation
    shown = np.asarray(colorize(rgb, "viridis"), dtype=float) / 255
    std = rgb.std()
    np.testing.assert_allclose(shown[0, 0], 0.5 + (rgb[0, 0] - rgb.mean()) / std * 0.1, atol=1 / 255)
    np.testing.assert_allclose(shown[1, 1], 0.5 + (0.5 - rgb.mean()) / std * 0.1, atol=1 / 255)
    assert np.asarray(grayscale(rgb))[0, 0] == 128


def test_grayscale():
    im = grayscale(np.array([[0.0, 0.5], [1.0, 0.25]]))
    assert im.mode == "L" and im.size == (2, 2)
    assert [im.getpixel(p) for p in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 128, 255, 64]


def test_overlay_alpha_extremes():
    image, hm = photo(), ramp()
    zero = overlay(image, hm, alpha=0.0)
    assert zero.mode == "RGB" and np.array_equal(np.asarray(zero), np.asarray(image))
    one = overlay(image, hm, colormap="viridis", alpha=1.0)
    assert np.array_equal(np.asarray(one), np.asarray(colorize(hm, "viridis")))


def test_overlay_half():
    image = Image.new("RGB", (2, 1), (100, 0, 200))
    out = overlay(image, np.array([[0.0, 1.0]]), colormap="gray", alpha=0.5)
    assert out.getpixel((0, 0)) == (50, 0, 100)
    # (1 - a)·image + a·colour = (177.5, 127.5, 227.5), rounded by Pillow's blend to within one level
    assert all(abs(got - want) <= 0.5 for got, want in zip(out.getpixel((1, 0)), (177.5, 127.5, 227.5)))


def test_overlay_shape_mismatch():
    with pytest.raises(GradCAMError) as info:
        overlay(photo(6, 4), np.zeros((5, 6)))
    msg = str(info.value)
    assert "(5, 6)" in msg and "(4, 6)" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "x"])
def test_overlay_bad_alpha(alpha):
    with pytest.raises(GradCAMError, match="alpha"):
        overlay(photo(), ramp(), alpha=alpha)


def test_unknown_colormap_suggests():
    with pytest.raises(GradCAMError) as info:
        colorize(ramp(), "jett")
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'jett'" in msg and "Did you mean" in msg and "'jet'" in msg


def test_figure_size_and_content():
    image = Image.new("RGB", (32, 24), (255, 0, 0))
    hm = np.zeros((24, 32))
    out = figure(image, hm, title="class 3: cat", dpi=50)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert out.size == (625, 177)  # three panels of 4 in at the picture's aspect, the titles, 50 dpi
    arr = np.asarray(out).astype(int)
    pure_red = (arr[..., 0] > 240) & (arr[..., 1] < 15) & (arr[..., 2] < 15)
    assert pure_red.sum() > 500  # the original panel is drawn
    assert (arr.sum(axis=2) < 100).sum() > 20  # dark title / labels
    assert figure(image, hm, title="t").size == (1250, 355)


def blank_rows(picture: Image.Image) -> float:
    """The share of the picture's rows that are all white."""
    return float((np.asarray(picture.convert("L")) > 250).all(axis=1).mean())


def test_figures_fill_their_frame_and_the_colour_bar_is_the_panels_height():
    """Issue 27: wide white margins, and a colour bar taller than the panels. A dark photo and a zero map
    (dark blue): every row but the titles' has ink, and the bar spans the heatmap's rows exactly."""
    for size in ((451, 300), (300, 451), (64, 64)):
        image, hm = Image.new("RGB", size, (20, 20, 20)), np.zeros(size[::-1])
        out = figure(image, hm, title="a title", dpi=50)
        assert blank_rows(out) < 0.2, (size, blank_rows(out))
        arr = np.asarray(out).astype(int)
        blue = (arr[..., 2] > 100) & (arr[..., 0] < 60) & (arr[..., 1] < 60)  # jet's low end
        rows = np.flatnonzero(blue.any(axis=1))
        heatmap_rows = np.flatnonzero(blue[:, out.width // 2])
        bar = [c for c in range(out.width * 2 // 3 - 40, out.width * 2 // 3 + 40) if blue[:, c].any()]
        assert bar and abs(rows.max() - heatmap_rows.max()) <= 1 and abs(rows.min() - heatmap_rows.min()) <= 1
    long = figure(Image.new("RGB", (64, 64)), np.zeros((64, 64)), title="word " * 60, dpi=50)
    assert long.width == 625  # a long title wraps instead of widening or clipping


def test_figure_validates_like_overlay():
    with pytest.raises(GradCAMError, match="alpha"):
        figure(photo(), ramp(), title="t", alpha=2.0)
    with pytest.raises(GradCAMError, match="Did you mean"):
        figure(photo(), ramp(), title="t", colormap="viridiss")


def test_grid_shape():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("L", (8, 8), 0)
    rows = [[red, blue, red], [blue, red]]  # ragged
    out = grid(rows, [["a", "b", "c"], ["d", "e"]], dpi=50)
    assert out.mode == "RGB" and out.size == (450, 330)  # 3 in panels at their aspect, a title line each
    assert blank_rows(grid([[Image.new("RGB", (451, 300))] * 4] * 3, [["t"] * 4] * 3, dpi=50)) < 0.15
    arr = np.asarray(out).astype(int)
    assert ((arr[..., 0] > 240) & (arr[..., 1] < 15)).sum() > 1000
    assert grid([[red]], None, dpi=40).size == (120, 120)


def test_grid_errors():
    img = Image.new("RGB", (4, 4))
    with pytest.raises(GradCAMError, match=r"\[2\].*\[1\]"):
        grid([[img]], [["a", "b"]])
    with pytest.raises(GradCAMError, match="at least one"):
        grid([])
    with pytest.raises(GradCAMError, match="ndarray"):
        grid([[np.zeros((4, 4))]])


@pytest.mark.parametrize("name", ["jet", "viridis", "inferno", "gray", "turbo"])
def test_colorize_equals_matplotlib_exactly(name):
    """The palette lookup gives the colours matplotlib's colormap gives, bin edges and 1.0 included."""
    import matplotlib

    hm = np.random.default_rng(0).random((37, 53), dtype=np.float32)
    hm[0, :4] = [0.0, 1.0, np.float32(0.99999994), 0.5]
    expected = matplotlib.colormaps[name](hm, bytes=True)[..., :3]
    assert np.array_equal(np.asarray(colorize(hm, name)), expected)

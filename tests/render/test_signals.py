"""gradcam.render.signals: the line is drawn in the map's colours, one row per channel.
(segment_colours' blue-to-red ramp and the row count: test_media_pictures.py.)"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from gradcam.errors import VisualizeError
from gradcam.render import signals


def test_each_segment_takes_the_mean_of_its_two_samples():
    heat = np.array([0.0, 1.0, 1.0, np.nan, 0.2], np.float32)  # NaN counts as 0
    expected = matplotlib.colormaps["viridis"](np.array([0.5, 1.0, 0.5, 0.1]))
    assert np.allclose(signals.segment_colours(heat, "viridis"), expected)


def _line_pixels(picture):
    """The longest run of strongly coloured pixels in the picture's most colourful row: the line of a
    flat signal (the colour bar is a short run at the right)."""
    rgb = np.asarray(picture).astype(int)
    coloured = rgb.max(axis=2) - rgb.min(axis=2) > 80
    row = int(np.argmax(coloured.sum(axis=1)))
    runs, start = [], None
    for x, on in enumerate(list(coloured[row]) + [False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            runs.append((x - start, start, x))
            start = None
    _, first, last = max(runs)
    return rgb[row, first:last]


def test_the_drawn_line_is_blue_where_the_map_is_0_and_red_where_it_is_1():
    heat = np.zeros(100, np.float32)
    heat[50:] = 1.0
    line = _line_pixels(signals.signal_plot(np.ones(100), heat, colormap="jet"))
    left, right = line[: len(line) // 3], line[-len(line) // 3 :]
    assert len(line) > 300  # most of the 800-pixel-wide figure
    assert (left[:, 2] > left[:, 0] + 100).all() and (right[:, 0] > right[:, 2] + 100).all()
    flipped = _line_pixels(signals.signal_plot(np.ones(100), heat[::-1], colormap="jet"))
    assert (flipped[:20, 0] > flipped[:20, 2] + 100).all()  # it follows the map, not the position


def test_each_channel_gets_a_row_of_its_own():
    heat = np.linspace(0, 1, 30)
    heights = [signals.signal_plot(np.zeros((c, 30)), heat).height for c in (1, 2, 3)]
    assert heights[0] < heights[1] < heights[2]
    assert heights[2] - heights[1] == heights[1] - heights[0]  # the same height added per channel


@pytest.mark.parametrize("signal, heat, kwargs, message", [
    (np.zeros((2, 10)), np.zeros(10), {"channel_names": ["only one"]}, "1 channel_names for a signal of 2"),
    (np.zeros(1), np.zeros(1), {}, r"L >= 2, got shape \(1,\)"),
    (np.array([0.0, np.nan, 1.0]), np.zeros(3), {}, "NaN or infinite"),
    (np.zeros((2, 2, 5)), np.zeros(5), {}, r"signal of shape \(2, 2, 5\)"),
    (np.zeros(5), np.zeros(5), {"colormap": "jett"}, "unknown colormap 'jett'"),
])
def test_bad_arguments_are_named(signal, heat, kwargs, message):
    with pytest.raises(VisualizeError, match=message):
        signals.signal_plot(signal, heat, **kwargs)

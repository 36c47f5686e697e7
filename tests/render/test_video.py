"""gradcam.render.video: even sizes, frame rates, atomic writes, frame folders, overlays and key frames.
(The 9-frame 33×17 moving-square round trip: test_media_pictures.py.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from gradcam.errors import ImageError, VisualizeError
from gradcam.io.clips import read_frames, read_video
from gradcam.render import video
from gradcam.render.pictures import colorize

av = pytest.importorskip("av")


def _bars(count=3, height=7, width=9):
    """Frames with a bright last row and column (what even-size padding repeats), darker inside."""
    frames = np.full((count, height, width, 3), 40, np.uint8)
    frames[:, -1, :] = 220
    frames[:, :, -1] = 220
    return frames


def test_odd_sizes_are_padded_by_repeating_the_last_row_and_column(tmp_path):
    frames = _bars()
    back, _ = read_video(video.write_video(frames, tmp_path / "odd.mp4", fps=10))
    assert back.shape == (3, 8, 10, 3)
    copy = back.astype(int)
    assert np.abs(copy[:, 7, :9] - copy[:, 6, :9]).mean() < 12  # the padding row repeats the last row
    assert np.abs(copy[:, :7, 9] - copy[:, :7, 8]).mean() < 12  # ... and the column the last column
    assert copy[:, 7, :8].mean() > copy[:, 3, :8].mean() + 100  # bright, not black
    even = np.full((2, 6, 8, 3), 100, np.uint8)
    assert read_video(video.write_video(even, tmp_path / "even.mp4"))[0].shape == (2, 6, 8, 3)


@pytest.mark.parametrize("fps", [7.5, 29.97])
def test_the_frame_rate_comes_back(tmp_path, fps):
    back, rate = read_video(video.write_video(_bars(count=4), tmp_path / "r.mp4", fps=fps))
    assert len(back) == 4 and rate == pytest.approx(fps, abs=0.01)


def test_a_video_is_replaced_whole_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    video.write_video(_bars(count=2), path)
    video.write_video(_bars(count=5), path)
    assert len(read_video(path)[0]) == 5 and list(tmp_path.iterdir()) == [path]

    made = []
    from_ndarray = av.VideoFrame.from_ndarray

    def dies_at_frame_55(*args, **kwargs):  # late: x264 has written packets by then
        made.append(1)
        if len(made) == 55:
            raise RuntimeError("encoder died")
        return from_ndarray(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", dies_at_frame_55)
    with pytest.raises(RuntimeError, match="encoder died"):
        video.write_video(_bars(count=60), path)
    assert list(tmp_path.iterdir()) == [path] and len(read_video(path)[0]) == 5  # the old one stays


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 4, 4, 3), np.float32), r"uint8 array .*float32"),
    (np.zeros((0, 4, 4, 3), np.uint8), r"got shape \(0, 4, 4, 3\)"),
    (np.zeros((2, 4, 4, 4), np.uint8), r"\(T, H, W, 3\)"),
])
def test_bad_frames_are_refused_before_writing(tmp_path, bad, message):
    with pytest.raises(VisualizeError, match=message):
        video.write_video(bad, tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fps", [0, -5, float("nan"), "fast"])
def test_a_bad_frame_rate_is_named(tmp_path, fps):
    with pytest.raises(VisualizeError, match="fps must be"):
        video.write_video(_bars(), tmp_path / "x.mp4", fps=fps)


def test_reading_limits_and_errors_name_the_file_or_argument(tmp_path):
    with pytest.raises(VisualizeError, match="max_frames must be"):
        read_video(tmp_path / "x.mp4", max_frames=0)
    with pytest.raises(ImageError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.mp4"):
        read_video(tmp_path / "empty.mp4")


def test_without_pyav_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    for call in (lambda: read_video(tmp_path / "a.mp4"), lambda: video.write_video(_bars(), tmp_path / "a.mp4")):
        with pytest.raises(VisualizeError, match=r'pip install "gradcam\[video\]"'):
            call()


def test_a_folder_of_frames_is_read_in_name_order(tmp_path):
    for name, level in (("b.png", 200), ("a.png", 10), ("c.jpg", 120)):
        Image.new("RGB", (5, 3), (level,) * 3).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = read_frames(tmp_path)
    assert frames.shape == (3, 3, 5, 3) and frames.dtype == np.uint8
    assert np.argsort(frames[:, 1, 2, 0]).tolist() == [0, 2, 1]  # a (10), c (120), b (200)
    Image.new("RGB", (6, 3)).save(tmp_path / "d.png")
    with pytest.raises(ImageError, match="differ in size"):
        read_frames(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files in .*empty"):
        read_frames(tmp_path / "empty")
    with pytest.raises(ImageError, match="nowhere is not a folder"):
        read_frames(tmp_path / "nowhere")


def test_overlay_frames_blend_each_frame_with_its_own_map():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 4, 6, 3), dtype=np.uint8)
    maps = rng.random((3, 4, 6)).astype(np.float32)
    assert np.array_equal(video.overlay_frames(frames, maps, alpha=0.0), frames)
    full = video.overlay_frames(frames, maps, colormap="viridis", alpha=1.0)
    for t in range(3):
        assert np.array_equal(full[t], np.asarray(colorize(maps[t], "viridis")))
    with pytest.raises(VisualizeError, match="alpha must be in"):
        video.overlay_frames(frames, maps, alpha=1.5)


def test_key_frames_are_evenly_spaced_first_and_last_included():
    frames = np.full((10, 8, 16, 3), 128, np.uint8)
    maps = np.zeros((10, 8, 16), np.float32)
    maps[9] = 1.0  # only the last frame is hot
    strip = video.key_frames(frames, maps, count=4, height=40)
    assert strip.size == (4 * 80 + 3 * 4, 40)
    tiles = np.asarray(strip).astype(int)[35, [slot * 84 + 40 for slot in range(4)]]  # below the labels
    assert int(np.argmax(tiles[:, 0] - tiles[:, 2])) == 3
    assert video.key_frames(frames[:2], maps[:2], count=6, height=8).size == (2 * 16 + 4, 8)  # all when fewer
    with pytest.raises(VisualizeError, match="count must be"):
        video.key_frames(frames, maps, count=0)
    with pytest.raises(VisualizeError, match="maps of shape"):
        video.key_frames(frames, maps[:3])

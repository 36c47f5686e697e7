"""Pictures and files for clips, volumes and signals: what they show is where the map is."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam.errors import ImageError, VisualizeError
from gradcam.io.clips import read_frames, read_video
from gradcam.io.volumes import load_volume
from gradcam.render import signals, video, volumes

pytest.importorskip("av")


def _square_clip(count=9, height=17, width=33):
    frames = np.full((count, height, width, 3), 30, np.uint8)
    for t in range(count):
        frames[t, 4:12, 2 + 2 * t:10 + 2 * t] = 240
    return frames


def test_a_video_round_trip_keeps_frames_size_and_content(tmp_path):
    frames = _square_clip()
    path = video.write_video(frames, tmp_path / "clip.mp4", fps=12)
    back, fps = read_video(path)
    # H.264 in yuv420p needs even sizes: 17×33 is padded by its last row and column to 18×34
    assert back.shape == (9, 18, 34, 3) and fps == pytest.approx(12)
    assert np.abs(back[:, :17, :33].astype(int) - frames).mean() < 6  # lossy, but the same pictures
    for t in range(9):  # the square is where it was in every frame
        column = back[t, 8, :33, 0].astype(int)
        assert abs(int(np.argmax(column > 128)) - (2 + 2 * t)) <= 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    assert read_video(path, max_frames=4)[0].shape[0] == 4


def test_frames_from_a_folder_and_bad_videos(tmp_path):
    for t, frame in enumerate(_square_clip(count=3)):
        Image.fromarray(frame).save(tmp_path / f"{t}.png")
    assert read_frames(tmp_path).shape == (3, 17, 33, 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ImageError, match="bad.mp4"):
        read_video(tmp_path / "bad.mp4")
    with pytest.raises(VisualizeError, match=r"\(T, H, W, 3\)"):
        video.write_video(np.zeros((2, 4, 4)), tmp_path / "x.mp4")


def test_overlays_and_key_frames_show_the_heat_where_the_map_is():
    frames = np.full((5, 10, 20, 3), 128, np.uint8)
    maps = np.zeros((5, 10, 20), np.float32)
    maps[:, :, 10:] = 1.0  # hot on the right half
    out = video.overlay_frames(frames, maps, colormap="jet", alpha=0.5)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert out[:, :, 15, 0].mean() > out[:, :, 5, 0].mean() + 50  # red where hot
    assert out[:, :, 5, 2].mean() > out[:, :, 15, 2].mean() + 50  # blue where cold
    strip = video.key_frames(frames, maps, count=3, height=40)
    assert strip.size == (3 * 80 + 2 * 4, 40)
    with pytest.raises(VisualizeError, match="maps of shape"):
        video.overlay_frames(frames, maps[:2])


def test_volumes_from_npy_and_nifti_keep_their_axes(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.zeros((4, 5, 6), np.float32)  # (D, H, W)
    volume[3, 1, 2] = 7.0
    np.save(tmp_path / "v.npy", volume)
    assert np.array_equal(load_volume(tmp_path / "v.npy"), volume)
    # NIfTI stores (X, Y, Z): the same voxel at x=2, y=1, z=3 comes back at [d=3, h=1, w=2]
    xyz = np.zeros((6, 5, 4), np.float32)
    xyz[2, 1, 3] = 7.0
    nibabel.save(nibabel.Nifti1Image(xyz, np.eye(4)), tmp_path / "v.nii.gz")
    assert np.array_equal(load_volume(tmp_path / "v.nii.gz"), volume)
    np.save(tmp_path / "flat.npy", np.zeros((3, 3)))
    with pytest.raises(ImageError, match=r"flat.npy has shape \(3, 3\)"):
        load_volume(tmp_path / "flat.npy")


def test_slice_grids_show_every_slice_asked_and_the_hot_one_hot():
    volume = np.random.default_rng(0).normal(size=(8, 12, 12)).astype(np.float32)
    heat = np.zeros((8, 12, 12), np.float32)
    heat[5] = 1.0
    pictures = volumes.slice_pictures(volume, heat)
    assert [i for i, _ in pictures] == list(range(8))
    red = [np.asarray(p)[..., 0].mean() - np.asarray(p)[..., 2].mean() for _, p in pictures]
    assert int(np.argmax(red)) == 5
    four = volumes.slice_grid(volume, heat, slices=4, tile=48)
    eight = volumes.slice_grid(volume, heat, slices=8, tile=48)
    assert four.size == (2 * 48 + 4, 2 * 48 + 4) and eight.size == (3 * 48 + 2 * 4, 3 * 48 + 2 * 4)
    with pytest.raises(VisualizeError, match=r"map of shape \(8, 12\)"):
        volumes.slice_grid(volume, heat[:, 0])


def test_a_signal_is_coloured_by_its_map():
    heat = np.linspace(0, 1, 50).astype(np.float32)
    colours = signals.segment_colours(heat, "jet")
    assert colours.shape == (49, 4)
    assert colours[0, 2] > colours[0, 0] and colours[-1, 0] > colours[-1, 2]  # blue where 0, red where 1
    plot = signals.signal_plot(np.sin(np.arange(50) / 5)[None].repeat(2, 0), heat, title="two channels")
    one = signals.signal_plot(np.sin(np.arange(50) / 5), heat)
    assert plot.height > one.height and plot.mode == "RGB"
    with pytest.raises(VisualizeError, match=r"map of shape \(49,\)"):
        signals.signal_plot(np.zeros(50), heat[:49])

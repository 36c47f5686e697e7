"""gradcam.render.volumes: NIfTI axes and channels, readable errors, and grids that show what was asked.
(The .npy/.nii.gz round trip and the hot slice of slice_pictures: test_media_pictures.py.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gradcam.errors import ImageError, VisualizeError
from gradcam.io.volumes import load_volume
from gradcam.render import volumes

nibabel = pytest.importorskip("nibabel")


def _labelled(shape):
    """A volume whose every voxel holds its own flat index: any axis swap shows."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_nifti_with_channels_comes_back_channels_first_and_axes_reversed(tmp_path):
    cdhw = _labelled((2, 3, 4, 5))  # (C, D, H, W)
    xyzc = cdhw.transpose(3, 2, 1, 0)  # what a scanner stores: (X, Y, Z, C)
    nibabel.save(nibabel.Nifti1Image(xyzc, np.eye(4)), tmp_path / "v.nii")
    back = load_volume(tmp_path / "v.nii")
    assert back.dtype == np.float32 and np.array_equal(back, cdhw)


def test_npy_of_any_number_type_becomes_float32_with_its_shape(tmp_path):
    np.save(tmp_path / "v.npy", _labelled((2, 3, 4, 5)).astype(np.int16))
    back = load_volume(tmp_path / "v.npy")
    assert back.dtype == np.float32 and np.array_equal(back, _labelled((2, 3, 4, 5)))


def test_bad_volume_files_name_the_file(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"png")
    with pytest.raises(ImageError, match=r"scan.png: expected one of \.npy, \.nii, \.nii\.gz"):
        load_volume(tmp_path / "scan.png")
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(ImageError, match="cannot read volume .*broken.nii.gz"):
        load_volume(tmp_path / "broken.nii.gz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ImageError, match="objects.npy"):
        load_volume(tmp_path / "objects.npy")
    np.save(tmp_path / "five.npy", np.zeros((1, 2, 2, 2, 2)))
    with pytest.raises(ImageError, match=r"five.npy has shape \(1, 2, 2, 2, 2\)"):
        load_volume(tmp_path / "five.npy")
    with pytest.raises(ImageError, match="missing.npy"):
        load_volume(tmp_path / "missing.npy")


def test_nifti_without_nibabel_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel now fails
    with pytest.raises(VisualizeError, match=r'pip install "gradcam\[medical\]"'):
        load_volume(tmp_path / "v.nii.gz")


def test_grid_shows_all_slices_up_to_sixteen_and_lays_them_out_by_columns():
    def size(depth, **kw):
        return volumes.slice_grid(np.ones((depth, 6, 6)), np.zeros((depth, 6, 6)), tile=12, **kw).size

    step = 12 + 4  # a tile and its gap
    assert size(5) == (3 * step - 4, 2 * step - 4)  # all 5 slices: 3 columns, 2 rows
    assert size(40) == (4 * step - 4, 4 * step - 4)  # capped at 16: 4 × 4
    assert size(40, slices=40) == (7 * step - 4, 6 * step - 4)  # asked for all 40
    assert size(5, columns=5) == (5 * step - 4, 12)  # one row
    assert size(5, columns=9) == (5 * step - 4, 12)  # never wider than the slices
    assert size(5, slices=99) == size(5)  # never more slices than there are


def test_grid_panels_are_in_slice_order_and_the_hot_one_is_red():
    depth, tile = 9, 20
    heat = np.zeros((depth, 6, 6), np.float32)
    heat[6] = 1.0
    grid = np.asarray(volumes.slice_grid(np.ones((depth, 6, 6)), heat, columns=depth, tile=tile)).astype(int)
    centres = grid[tile - 3, [slot * (tile + 4) + tile // 2 for slot in range(depth)]]  # below each label
    redness = centres[:, 0] - centres[:, 2]
    assert int(np.argmax(redness)) == 6 and redness[6] > 50 and (np.delete(redness, 6) < 0).all()


def test_channels_are_averaged_and_scaled_over_the_whole_volume():
    volume = np.zeros((2, 3, 4, 4), np.float32)  # (C, D, H, W)
    volume[0, 2] = 10.0  # the mean of the channels is 5 in slice 2, 0 elsewhere
    volume[1, 1] = 5.0  # ... and 2.5 in slice 1
    pictures = volumes.slice_pictures(volume, np.zeros((3, 4, 4)), alpha=0.0)  # alpha 0: the grey only
    greys = [int(np.asarray(p)[0, 0, 0]) for _, p in pictures]
    assert greys == [0, 128, 255]
    assert [i for i, _ in volumes.slice_pictures(volume, np.zeros((3, 4, 4)), slices=2)] == [0, 2]


@pytest.mark.parametrize("argument", [{"slices": 0}, {"columns": 0}, {"columns": 1.5}, {"tile": -1}])
def test_bad_grid_arguments_are_named(argument):
    name = next(iter(argument))
    with pytest.raises(VisualizeError, match=f"{name} must be"):
        volumes.slice_grid(np.ones((3, 4, 4)), np.zeros((3, 4, 4)), **argument)


def test_a_volume_that_is_not_3d_is_refused():
    with pytest.raises(VisualizeError, match=r"got shape \(4, 4\)"):
        volumes.slice_pictures(np.ones((4, 4)), np.zeros((4, 4)))

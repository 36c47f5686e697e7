"""Reading volumes (CT, MRI, any 3-D array): ``.npy`` and NIfTI files (nibabel, the ``medical`` extra)."""

from __future__ import annotations

import os

import numpy as np

from gradcam.errors import ImageError, VisualizeError

VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz")
"""The volume files :func:`load_volume` reads."""


def load_volume(path: str | os.PathLike) -> np.ndarray:
    """A volume as float32 (D, H, W), or (C, D, H, W) with channels: ``.npy``, or NIfTI ``.nii`` /
    ``.nii.gz`` (nibabel, the ``medical`` extra). NIfTI stores (X, Y, Z[, C]); it is returned as (Z, Y, X)
    = (D, H, W) (or (C, Z, Y, X)), so that ``volume[d]`` is the axial slice d, rows along Y, columns
    along X. The affine (voxel spacing, orientation) is not applied: the voxels come as stored."""
    name = os.fspath(path)
    if not name.lower().endswith(VOLUME_SUFFIXES):
        raise ImageError(f"cannot read volume {name}: expected one of {', '.join(VOLUME_SUFFIXES)}")
    if name.lower().endswith(".npy"):
        try:
            data = np.load(name, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ImageError(f"cannot read volume {name}: {exc}") from None
    else:
        data = _read_nifti(name)
    if data.ndim not in (3, 4) or not np.issubdtype(data.dtype, np.number):
        raise ImageError(f"volume {name} has shape {data.shape} ({data.dtype}); "
                         "expected (D, H, W) or (C, D, H, W) numbers")
    return np.ascontiguousarray(data, dtype=np.float32)


def _read_nifti(name: str) -> np.ndarray:
    """A NIfTI file's voxels, its axes reversed: (X, Y, Z) -> (Z, Y, X), (X, Y, Z, C) -> (C, Z, Y, X)."""
    nibabel = _nibabel()
    try:
        data = nibabel.load(name).get_fdata(dtype=np.float32)
    except (OSError, ValueError, EOFError, nibabel.filebasedimages.ImageFileError) as exc:
        raise ImageError(f"cannot read volume {name}: {exc}") from None
    return data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0) if data.ndim == 4 else data


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise VisualizeError('reading NIfTI files needs nibabel: pip install "gradcam[medical]"') from None
    return nibabel

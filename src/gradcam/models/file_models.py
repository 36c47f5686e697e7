"""What model files that carry no preprocessing (ONNX, Keras) share: class names from a ``labels.txt`` beside
the file, and the input size, mean and std as given, as the file says, or guessed — and then said, in one line."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from gradcam.errors import ModelError, PreprocessingGuess
from gradcam.models.bundle import Preprocess
from gradcam.models.labels import class_names


def file_labels(path: Path, outputs: int | None) -> list[str] | None:
    """The names in ``labels.txt`` beside a model file (one per line), else ImageNet's for 1000 outputs."""
    listed = path.with_name("labels.txt")
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if outputs is not None and len(names) != outputs:
            raise ModelError(f"{listed}: {len(names)} names for a model with {outputs} outputs")
        return names
    return class_names(outputs)


def file_preprocess(spec: str, size: int | None, mean: Sequence[float] | None, std: Sequence[float] | None,
                    given_size: int | None = None) -> Preprocess:
    """The preprocessing of a model file: what was given, else what the file says (``size``), else a guess
    (224 px, ImageNet's mean and std), stated in one line."""
    unsaid = ([("input size", "224 px", "--input-size")] if given_size is None and size is None else []) + (
        [("mean and std", "ImageNet's", "--mean, --std")] if mean is None or std is None else [])
    if unsaid:
        warnings.warn(f"{spec}: the file does not say its {' or '.join(what for what, _, _ in unsaid)}; using "
                      + ", ".join(f"{value} {what} (give {flags})" for what, value, flags in unsaid),
                      PreprocessingGuess, stacklevel=4)
    defaults = Preprocess()
    return Preprocess(given_size or size or 224, tuple(mean or defaults.mean), tuple(std or defaults.std),
                      "bilinear")

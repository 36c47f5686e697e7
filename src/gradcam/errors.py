"""One family of errors, each message naming the file, layer, argument or shape that failed."""

from __future__ import annotations

import difflib
from typing import Iterable


class GradCAMError(Exception):
    """Base of every error gradcam raises on purpose (bad input, bad option, missing weights)."""


class ImageError(GradCAMError, ValueError):
    """An image could not be read or is not acceptable (names the file)."""


class LayerError(GradCAMError, ValueError):
    """A target layer is unknown or unsuitable (names the layer, suggests close names)."""


class TargetError(GradCAMError, ValueError):
    """A target class or score is invalid (out of range, unknown name, wrong length)."""


class ModelError(GradCAMError, ValueError):
    """A model or its weights could not be loaded (names the model or the file)."""


class DataError(GradCAMError, ValueError):
    """A training folder or checkpoint that cannot be used (names the folder and what is wrong)."""


class OptionError(GradCAMError, ValueError):
    """An option has a value that is not allowed (names the option and the valid values)."""


class VisualizeError(OptionError):
    """A bad argument to a picture function (colormap, alpha, heatmap shape)."""


def suggest(word: str, choices: Iterable[str], n: int = 5) -> str:
    """' Did you mean: a, b?' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""


class PreprocessingGuess(UserWarning):
    """A model file does not say how its input is preprocessed, and gradcam guessed (the message says what)."""

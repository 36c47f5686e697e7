"""What every explanation is: the fields an image's, a clip's, a volume's, a signal's and a task's
explanation share (which layer, method and model gave it, what its pictures are named after, how they are
coloured) and the one way results are written: ``save(directory) -> {kind: path}``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(kw_only=True)
class Explained:
    """The base of :class:`~gradcam.apps.explainer.Explanation`, :class:`~gradcam.apps.media.MediaExplanation`
    and :class:`~gradcam.apps.tasks.TaskExplanation`."""

    layer: str = ""
    method: str = "gradcam"
    model: str = ""
    name: str = "image"  # what its pictures' file names start with (may hold folders: class_a/0001.jpg)
    colormap: str = "jet"
    alpha: float = 0.5

    @property
    def title(self) -> str:
        """'label (p) · method · model · layer' for an explanation of one class."""
        layer = f" · layer {self.layer}" if self.layer else ""
        return f"{self.label} ({self.probability:.1%}) · {self.method} · {self.model}{layer}"

    def save(self, directory: str | os.PathLike, **options) -> dict[str, Path]:
        """Write the pictures (and maps) under ``directory``; returns {kind: path}."""
        raise NotImplementedError

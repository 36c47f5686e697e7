"""The checkpoint format of ``gradcam train``: a folder with ``model.safetensors`` and ``config.json``
(format, architecture, class names, preprocessing, metrics), read back by ``load_model(path)``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from gradcam.errors import DataError
from gradcam.models.bundle import ModelBundle, Preprocess

ARCHITECTURES = ("efficientnet_lite0", "small-cnn")


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (three halve the size), global average pooling, one linear layer."""

    def __init__(self, classes: int, width: int = 32):
        super().__init__()

        def block(i, o, pool=True):
            layers = [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        self.features = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                                      block(4 * width, 4 * width, pool=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@dataclass
class TrainConfig:
    arch: str = "efficientnet_lite0"
    classes: tuple = ()
    image_size: int = 224
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    metrics: dict | None = None


def save_checkpoint(model: nn.Module, config: TrainConfig, out: str | os.PathLike, val_files=(),
                    data_dir: str | os.PathLike | None = None) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    data = asdict(config) | {"format": CHECKPOINT_FORMAT, "val_files": [str(f) for f in val_files],
                             "data_dir": None if data_dir is None else str(Path(data_dir).resolve())}
    (out / "config.json").write_text(json.dumps(data, indent=1))
    return out


CHECKPOINT_FORMAT = "gradcam-checkpoint/1"


def is_checkpoint(path: Any) -> bool:
    """A folder written by :func:`save_checkpoint`: its config.json names our format (a Hugging Face
    snapshot or any other folder with a config.json is not one)."""
    try:
        config = Path(path) / "config.json"
        if not config.is_file():
            return False
        data = json.loads(config.read_text(encoding="utf-8"))
    except (TypeError, OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith("gradcam-checkpoint/")


def trained_on(path: Any) -> Path | None:
    """The folder a `gradcam train` checkpoint was trained on (None when it does not say)."""
    if not is_checkpoint(path):
        return None
    root = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("data_dir")
    return Path(root).resolve() if root else None


def held_out_files(path: Any) -> list[str] | None:
    """The images a `gradcam train` checkpoint held out for validation, each relative to the folder it was
    trained on ("circle/0003.png"); None for anything that is not such a checkpoint."""
    if not is_checkpoint(path):
        return None
    data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    root = data.get("data_dir")
    return [os.path.relpath(f, root).replace(os.sep, "/") if root else "/".join(Path(f).parts[-2:])
            for f in data.get("val_files", [])]


def load_checkpoint(path: str | os.PathLike, device: Any = None) -> ModelBundle:
    """A trained model folder -> a bundle with its class names and preprocessing, in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        data = json.loads((path / "config.json").read_text())
        config = TrainConfig(data["arch"], tuple(data["classes"]), data["image_size"], tuple(data["mean"]),
                             tuple(data["std"]), data["interpolation"], data.get("metrics"))
        model = SmallCNN(len(config.classes)) if config.arch == "small-cnn" else _lite0_shell(len(config.classes))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: not a usable gradcam checkpoint ({type(exc).__name__}: {exc})") from None
    model.eval()
    if device is not None:
        model.to(device)
    preprocess = Preprocess(config.image_size, config.mean, config.std, config.interpolation)
    return ModelBundle(model, preprocess, list(config.classes), path.name)


def _lite0_shell(classes: int) -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", num_classes=classes)

"""Train a classifier on a folder of classes (one sub-folder each), save it, explain it later.

Transfer learning from the bundled ImageNet EfficientNet-Lite0 (a new head; the backbone frozen or
fine-tuned) or a small CNN from scratch. The checkpoint is a folder: ``model.safetensors`` and
``config.json`` (architecture, class names, preprocessing, metrics), which ``load_model(path)`` and
``gradcam explain --checkpoint`` read with no other flag.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from gradcam.apps.device import choose_device
from gradcam.errors import DataError, ImageError
from gradcam.io.images import IMAGE_SUFFIXES, load_image
from gradcam.models.bundle import Preprocess
from gradcam.models.checkpoint import ARCHITECTURES, SmallCNN, TrainConfig, save_checkpoint
from gradcam.models.sources import load_model


def build(config: TrainConfig) -> nn.Module:
    """The untrained network of a config (the Lite0 one with the ImageNet backbone)."""
    if config.arch == "small-cnn":
        return SmallCNN(len(config.classes))
    if config.arch == "efficientnet_lite0":
        model = load_model("efficientnet_lite0").module
        model.reset_classifier(len(config.classes))
        return model
    raise DataError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(ARCHITECTURES)}")


def find_examples(data_dir: str | os.PathLike, warn: Callable[[str], None] | None = None):
    """(classes, [(path, class index)]) from one sub-folder per class; unreadable images are reported
    and skipped. Errors name the folder: missing, fewer than two classes, an empty class."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: needs at least two class folders, "
                        f"found {len(classes)} ({', '.join(classes) or 'none'})")
    examples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        good = []
        for path in files:
            try:
                load_image(path)
                good.append((str(path), index))
            except (ImageError, OSError) as exc:
                (warn or warnings.warn)(f"skipping unreadable image {exc}")
        if not good:
            raise DataError(f"{root / name}: class folder has no readable images")
        examples += good
    return classes, examples


def split(examples: list, val_split: float, seed: int) -> tuple[list, list]:
    """A seeded split that keeps every class in both parts."""
    rng = random.Random(seed)
    train, val = [], []
    for index in sorted({c for _, c in examples}):
        items = [e for e in examples if e[1] == index]
        rng.shuffle(items)
        n_val = round(len(items) * val_split)
        if val_split > 0 and (n_val < 1 or len(items) - n_val < 1):
            raise DataError(f"class {index} has {len(items)} image(s): too few to split {val_split:.0%} off "
                            "for validation; add images or lower --val-split")
        val += items[:n_val]
        train += items[n_val:]
    return train, val


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, examples, preprocess: Preprocess, flip: bool):
        self.examples, self.preprocess, self.flip = examples, preprocess, flip

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        path, label = self.examples[i]
        x = self.preprocess(load_image(path))
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, label


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    arch: str = "efficientnet_lite0",
    epochs: int = 5,
    image_size: int | None = None,
    val_split: float = 0.2,
    freeze_backbone: bool = True,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    device: Any = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, report train/val accuracy per epoch, save the checkpoint folder; returns the metrics."""
    if arch not in ARCHITECTURES:
        raise DataError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if epochs < 1 or not 0 <= val_split < 1:
        raise DataError(f"epochs must be >= 1 and val_split in [0, 1), got {epochs} and {val_split}")
    device = choose_device(device)
    # Seeded, with the caller's random state left as it was (no global seeding by a library call).
    with torch.random.fork_rng(devices=None if device.type == "cuda" else []):
        torch.manual_seed(seed)
        classes, examples = find_examples(data_dir, warn=lambda m: log(f"warning: {m}"))
        train_set, val_set = split(examples, val_split, seed)
        size = image_size or (224 if arch == "efficientnet_lite0" else 96)
        config = TrainConfig(arch, tuple(classes), size)
        if arch == "small-cnn":
            config.mean, config.std, config.interpolation = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear"
        preprocess = Preprocess(size, config.mean, config.std, config.interpolation)
        model = build(config).to(device)
        if arch == "efficientnet_lite0" and freeze_backbone:
            for name, param in model.named_parameters():
                param.requires_grad_(name.startswith("classifier"))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr or (3e-3 if arch == "small-cnn" or freeze_backbone else 3e-4))
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(_Dataset(train_set, preprocess, flip=True), batch_size=batch_size,
                                             shuffle=True, generator=generator)
        val_loader = torch.utils.data.DataLoader(_Dataset(val_set, preprocess, flip=False), batch_size=batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                                       total_steps=epochs * len(loader))
        loss_fn = nn.CrossEntropyLoss()
        history = []
        bar = tqdm(total=epochs * len(loader), desc="train", unit="batch", dynamic_ncols=True,
                   disable=None if progress is None else not progress)
        for epoch in range(1, epochs + 1):
            model.train()
            if arch == "efficientnet_lite0" and freeze_backbone:
                model.eval()  # frozen BatchNorm statistics too
            seen = correct = 0
            total_loss = 0.0
            bar.set_description(f"epoch {epoch}/{epochs}")
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                seen += len(y)
                correct += int((logits.argmax(1) == y).sum())
                total_loss += float(loss.detach()) * len(y)
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
                bar.update(1)
            val_acc = accuracy(model, val_loader, device) if val_set else float("nan")
            history.append({"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen,
                            "val_accuracy": val_acc})
            log(f"epoch {epoch}/{epochs}: loss {total_loss / seen:.3f}, train accuracy {correct / seen:.3f}, "
                f"val accuracy {val_acc:.3f}")
        bar.close()
        model.eval()
        config.metrics = {"train_images": len(train_set), "val_images": len(val_set), "history": history,
                          "val_accuracy": history[-1]["val_accuracy"], "train_accuracy": history[-1]["train_accuracy"]}
        save_checkpoint(model, config, out, val_files=[p for p, _ in val_set], data_dir=data_dir)
        return config.metrics


@torch.no_grad()
def accuracy(model: nn.Module, loader, device) -> float:
    model.eval()
    seen = correct = 0
    for x, y in loader:
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
        seen += len(y)
    return correct / max(seen, 1)




def flips(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An ``augment`` for :func:`fit`: each sample flipped along each spatial axis at random, and for images
    transposed (for classes that do not depend on orientation, like the shapes', cubes' and spheres')."""
    def pick() -> torch.Tensor:
        return (torch.rand(len(batch), generator=generator) < 0.5).view(-1, *[1] * (batch.dim() - 1))

    for axis in range(batch.dim() - 1, 1, -1):  # the last axis first
        batch = torch.where(pick(), batch.flip(axis), batch)
    if batch.dim() == 4 and batch.shape[-1] == batch.shape[-2]:
        batch = torch.where(pick(), batch.transpose(-1, -2), batch)
    return batch


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Train any classifier on tensors in memory (signals, volumes, clips, images): cross-entropy (or
    ``loss(output, rows)`` for the batch of samples ``rows``), AdamW with a one-cycle schedule, shuffled by
    a seeded generator, ``augment(batch, generator)`` on each batch if given. The caller's random state is
    left as it was. Returns the model in eval mode."""
    if epochs < 1 or len(inputs) != len(labels) or len(inputs) == 0:
        raise DataError(f"fit needs epochs >= 1 and as many labels as inputs, got {epochs}, {len(inputs)} "
                        f"inputs and {len(labels)} labels")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * -(-len(inputs) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), batch_size):
                rows = order[start:start + batch_size]
                x = inputs[rows] if augment is None else augment(inputs[rows], generator)
                output = model(x)
                value = nn.functional.cross_entropy(output, labels[rows]) if loss is None else loss(output, rows)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                schedule.step()
    return model.eval()

"""Train the small signal, volume, clip and ViT classifiers of the tests and draw what they look at (docs
pictures).

    python examples/layout_pictures.py docs                 # all of them
    python examples/layout_pictures.py docs clips vit       # some: signals, volumes, clips, vit
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gradcam
from gradcam.apps.media import explain_signal, explain_volume
from gradcam.apps.synthetic.shapes import (
    CLASSES,
    SIGNAL_CLASSES,
    VOLUME_CLASSES,
    draw_shapes,
    make_clips,
    make_signals,
    make_volumes,
)
from gradcam.apps.synthetic.small_nets import small_net, small_vit
from gradcam.apps.synthetic.train import fit, flips
from gradcam.render.objects import draw_boxes
from gradcam.render.pictures import grid, overlay
from gradcam.render.signals import signal_plot
from gradcam.render.video import key_frames
from gradcam.render.volumes import slice_grid


def main(folder: str, parts: list[str]) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for part in parts or ["signals", "volumes", "clips", "vit"]:
        {"signals": signals, "volumes": volumes, "clips": clips, "vit": vit}[part](out)
    print(f"wrote pictures in {out}")


def signals(out: Path) -> None:
    """A Conv1d network trained on bumps up or down: a held-out signal coloured by its map."""
    x, y, spans = make_signals(1500, length=256, seed=0)
    model = fit(small_net(1), torch.from_numpy(x[200:]), torch.from_numpy(y[200:]), epochs=30, lr=3e-3)
    result = explain_signal(x[3], model=model)
    title = (f"held-out signal: bump {SIGNAL_CLASSES[y[3]]} at {spans[3][0]}–{spans[3][1]}, "
             f"predicted {SIGNAL_CLASSES[result.class_index]} ({result.probability:.0%}), Grad-CAM")
    signal_plot(result.data, result.heatmap, title=title).save(out / "signal_map.png")


def volumes(out: Path) -> None:
    """A Conv3d network trained on cubes vs spheres among rods: a held-out volume's slices."""
    v, y, boxes = make_volumes(600, size=24, seed=0)
    model = fit(small_net(3), torch.from_numpy(v[100:]), torch.from_numpy(y[100:]), epochs=40, lr=3e-3, augment=flips)
    result = explain_volume(v[1, 0], model=model)
    z0, z1 = int(boxes[1][0]), int(boxes[1][3])
    print(f"volume: {VOLUME_CLASSES[y[1]]} in slices {z0}–{z1 - 1}, predicted {VOLUME_CLASSES[result.class_index]}")
    slice_grid(result.data, result.heatmap, slices=12, columns=6, tile=120).save(out / "volume_slices.png")


def clips(out: Path) -> None:
    """A Conv3d network (pooling space only, so its map keeps every frame) trained to tell a disc moving
    right from one moving left, among a still disc and bars: a held-out clip's frames with the map."""
    x, y, boxes = make_clips(700, frames=8, size=32, seed=0)
    model = fit(small_net(3, pool_size=(1, 2, 2)), torch.from_numpy(x[100:]), torch.from_numpy(y[100:]), epochs=20,
                lr=3e-3)
    clip = torch.from_numpy(x[:1])
    maps = gradcam.GradCAM(model)(clip).maps[0].numpy()
    grey = np.clip((x[0, 0] + 0.6) / 2.2 * 255, 0, 255).astype(np.uint8)
    key_frames(np.repeat(grey[..., None], 3, axis=-1), maps, count=8, height=128).save(out / "clip_strip.png")


def vit(out: Path) -> None:
    """The tests' trained ViT on held-out shapes: HiResCAM (top) and Grad-CAM (bottom) at its automatic layer."""
    images, labels, boxes, _ = draw_shapes(3300, size=64, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    model = fit(small_vit(), x[300:], torch.from_numpy(labels[300:, 0]), epochs=30, lr=1e-3, weight_decay=0.05,
                augment=flips)
    rows, titles = [], []
    for method in ("hirescam", "gradcam"):
        maps = gradcam.create_method(method, model)(x[:6]).maps.numpy()
        rows.append([draw_boxes(overlay(Image.fromarray(images[i]), maps[i]).resize((192, 192), Image.NEAREST),
                                [list(boxes[i, 0] * 3)], [""], colours=[(255, 255, 255)])
                     for i in range(6)])
        titles.append([f"{method}: {CLASSES[labels[i, 0]]}" for i in range(6)])
    grid(rows, titles, panel_inches=2.2).save(out / "vit_shapes.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs", sys.argv[2:])

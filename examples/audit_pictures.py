"""Train the two small CNNs of the audit test, one on the corner square alone and one on the shapes,
print the audit of each on held-out images where square and shape agree, and draw where each looks
(the picture of docs/guides/trust.md).

    python examples/audit_pictures.py docs
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gradcam
from gradcam.apps.synthetic.shapes import CLASSES, draw_shapes, square_only
from gradcam.apps.synthetic.small_nets import small_net
from gradcam.apps.synthetic.train import fit
from gradcam.engine.functional import upsample
from gradcam.render.pictures import grid, overlay

HELD, SIDE = 200, 192


def as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, _, _ = draw_shapes(1000 + HELD, size=64, seed=7, shortcut=True)
    square_images, square_labels = square_only(images, labels)
    clean_images, clean_labels, _, _ = draw_shapes(1000 + HELD, size=64, seed=8)
    models = {
        "learned the square": fit(small_net(2, channels=3), as_input(square_images[HELD:]),
                                  torch.from_numpy(square_labels[HELD:, 0]), epochs=10, lr=3e-3),
        "learned the shapes": fit(small_net(2, channels=3), as_input(clean_images[HELD:]),
                                  torch.from_numpy(clean_labels[HELD:, 0]), epochs=10, lr=3e-3),
    }
    test, test_labels, _, test_masks = draw_shapes(HELD, size=64, seed=9, shortcut=True)
    x, y, masks = as_input(test), torch.from_numpy(test_labels[:, 0]), torch.from_numpy(test_masks[:, 0])
    plain, plain_labels, _, _ = draw_shapes(HELD, size=64, seed=10)
    rows, titles = [], []
    for name, model in models.items():
        print(f"{name}: {gradcam.audit(model, x, y, masks, layer='7').summary()}")
        with torch.no_grad():
            chance = (model(as_input(plain)).argmax(1) == torch.from_numpy(plain_labels[:, 0])).float().mean()
        print(f"  without the square: accuracy {float(chance):.1%}")
        maps = upsample(gradcam.GradCAM(model, "7")(x[:4], y[:4]).maps, (SIDE, SIDE)).numpy()
        rows.append([overlay(Image.fromarray(test[i]).resize((SIDE, SIDE), Image.NEAREST), maps[i]) for i in range(4)])
        titles.append([f"{name}: {CLASSES[int(y[i])]}" for i in range(4)])
    grid(rows, titles, title="Grad-CAM of the true class: the audit flags the CNN whose maps lie on the corner square"
         ).save(out / "audit_shortcut.png")
    print(f"wrote {out / 'audit_shortcut.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")

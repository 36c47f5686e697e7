"""Train the small segmenter and detector of the tests on two-object shapes and draw what they look at
(docs pictures): each object's map in its own panel, and each class region's map with its mask outline.

    python examples/task_pictures.py docs
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gradcam.apps.synthetic.shapes import CLASSES, draw_shapes
from gradcam.apps.synthetic.small_nets import SmallDetector, fit_detector, small_segmenter
from gradcam.apps.synthetic.train import fit
from gradcam.apps.tasks import explain_task
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.render.pictures import grid

PRE = Preprocess(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="nearest")


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    images, labels, boxes, masks = draw_shapes(1150, size=64, seed=6, objects=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    photos = [Image.fromarray(images[i]).resize((256, 256), Image.NEAREST) for i in range(3)]  # held out

    detector = fit_detector(SmallDetector(), x[150:], torch.from_numpy(labels[150:]), torch.from_numpy(boxes[150:]),
                            epochs=20, lr=3e-3)
    bundle = ModelBundle(detector, PRE, list(CLASSES), "small detector")
    found = explain_task(photos[0], model=bundle, task="detection", method="layercam", layer="features.7",
                         min_score=0.3)
    found.pictures()["panels"].save(out / "detection_panels.png")

    target = np.zeros((len(images), 64, 64), np.int64)
    for j in range(2):
        target[masks[:, j]] = np.broadcast_to(labels[:, j, None, None] + 1, target.shape)[masks[:, j]]
    segmenter = fit(small_segmenter(), x[150:], torch.from_numpy(target[150:]), epochs=25, lr=3e-3)
    bundle = ModelBundle(segmenter, PRE, ["background", *CLASSES], "small segmenter")
    rows = [[explain_task(p, model=bundle, task="segmentation", layer="7", classes=c).pictures()["overlay"]
             for p in photos] for c in ("circle", "square")]
    grid(rows, [[f"class region: {c}"] * 3 for c in ("circle", "square")],
         title="small segmenter, Grad-CAM of each class region (its predicted mask outlined)"
         ).save(out / "segmentation_regions.png")
    print(f"wrote {out / 'detection_panels.png'} and {out / 'segmentation_regions.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")

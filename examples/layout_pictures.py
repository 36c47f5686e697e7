"""Train the small signal and volume classifiers of the tests and draw what they look at (README pictures).

    python examples/layout_pictures.py docs
"""

import sys
from pathlib import Path

import torch

from gradcam.apps.media import explain_signal, explain_volume
from gradcam.apps.shapes import SIGNAL_CLASSES, VOLUME_CLASSES, make_signals, make_volumes
from gradcam.apps.train import fit, small_net
from gradcam.render.signals import signal_plot
from gradcam.render.volumes import slice_grid


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    x, y, spans = make_signals(1500, length=256, seed=0)
    model = fit(small_net(1), torch.from_numpy(x[200:]), torch.from_numpy(y[200:]), epochs=30, lr=3e-3)
    result = explain_signal(x[3], model=model)
    title = (f"held-out signal: bump {SIGNAL_CLASSES[y[3]]} at {spans[3][0]}–{spans[3][1]}, "
             f"predicted {SIGNAL_CLASSES[result.class_index]} ({result.probability:.0%}), Grad-CAM")
    signal_plot(result.data, result.heatmap, title=title).save(out / "signal_map.png")
    v, y, boxes = make_volumes(600, size=24, seed=0)
    model = fit(small_net(3), torch.from_numpy(v[100:]), torch.from_numpy(y[100:]), epochs=25, lr=3e-3)
    result = explain_volume(v[1, 0], model=model)
    z0, z1 = int(boxes[1][0]), int(boxes[1][3])
    print(f"volume: {VOLUME_CLASSES[y[1]]} in slices {z0}–{z1 - 1}, predicted {VOLUME_CLASSES[result.class_index]}")
    slice_grid(result.data, result.heatmap, slices=12, columns=6, tile=120).save(out / "volume_slices.png")
    print(f"wrote {out / 'signal_map.png'} and {out / 'volume_slices.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")

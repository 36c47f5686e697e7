"""Cold start: the wall time of one `gradcam explain photo.jpg` in a fresh process, against a script that does
what pytorch-grad-cam's `cam.py` example does (import, build ResNet-50, load its weights, read the photo
with OpenCV, Grad-CAM of the predicted class at layer4, write the overlay), on the same photo and weights.

Each round starts both as new processes, in an order that alternates; the table gives medians. The
weights are a seeded ResNet-50 saved to a temporary file (no download), read by both. `gradcam --help` and
`gradcam --version` are timed beside them (they parse before anything heavy loads), and one more run of
`gradcam explain` under `python -X importtime` gives the share of the cold start each package's import takes.

Run:
    python benchmarks/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PGC_SCRIPT = """
import sys, cv2, numpy as np, torch, torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image
photo, weights, out = sys.argv[1:4]
model = torchvision.models.resnet50()
model.load_state_dict(torch.load(weights))
model.eval()
rgb = cv2.imread(photo, 1)[:, :, ::-1]
rgb = np.float32(cv2.resize(rgb, (224, 224))) / 255
x = preprocess_image(rgb, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
with GradCAM(model=model, target_layers=[model.layer4]) as cam:
    grayscale = cam(input_tensor=x, targets=None)[0]
cv2.imwrite(out + "/cam.jpg", show_cam_on_image(rgb, grayscale, use_rgb=True)[:, :, ::-1])
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet50().state_dict(), root / "resnet50.pth")
        photo = root / "photo.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo)
        (root / "pgc.py").write_text(PGC_SCRIPT)
        gradcam_bin = str(Path(sys.executable).with_name("gradcam"))
        contenders = {
            "gradcam explain": [gradcam_bin, "explain", str(photo), "--model", "resnet50", "--weights",
                                str(root / "resnet50.pth"), "--save", "overlay", "--quiet", "--out", str(root / "a")],
            "pytorch-grad-cam (cam.py)": [sys.executable, str(root / "pgc.py"), str(photo),
                                          str(root / "resnet50.pth"), str(root)],
            "python -c 'import torch, torchvision'": [sys.executable, "-c", "import torch, torchvision"],
            "gradcam --help": [gradcam_bin, "--help"],
            "gradcam --version": [gradcam_bin, "--version"],
        }
        times = {name: [] for name in contenders}
        for round_ in range(args.rounds):
            names = list(contenders)[:: 1 if round_ % 2 == 0 else -1]
            for name in names:
                times[name].append(timed(contenders[name]))
        print(f"cold start, medians of {args.rounds} rounds (s):")
        ours = statistics.median(times["gradcam explain"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:40s} {median:6.2f}   ÷ gradcam {median / ours:5.2f}")
        explain = [sys.executable, "-X", "importtime", "-m", "gradcam.cli", *contenders["gradcam explain"][1:]]
        start = time.perf_counter()
        done = subprocess.run(explain, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        print(f"imports of one `gradcam explain` ({wall:.2f} s in all under -X importtime), "
              "each package's own import time:")
        for package, seconds in import_shares(done.stderr)[:8]:
            print(f"  {package:40s} {seconds:6.2f} s  {seconds / wall:6.1%}")


def import_shares(report: str) -> list[tuple[str, float]]:
    """(top-level package, seconds) from ``-X importtime``'s lines: each module's own time (without what it
    imports) summed by its top-level package, largest first, so the shares do not overlap."""
    shares: dict[str, float] = {}
    for line in report.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[0].split(":")[1].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        shares[package] = shares.get(package, 0.0) + int(parts[0].split(":")[1]) / 1e6
    return sorted(shares.items(), key=lambda item: -item[1])


if __name__ == "__main__":
    main()

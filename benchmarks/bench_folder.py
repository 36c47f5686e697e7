"""End-to-end speed and memory of `gradcam explain DIR` against the model's forward-only speed.

Makes N photo-like JPEGs of mixed sizes (random crops and resizes of the photos that ship with
scikit-image and matplotlib), then
- forward-only: the bundled model on the same images, preprocessed beforehand, in the same batches;
- end to end: `gradcam explain DIR --quiet` in a fresh process (decode, preprocess, Grad-CAM, overlay
  at each image's own size, atomic PNG writes, manifest), its wall time and peak resident memory
  (VmHWM of the main process; worker processes are not counted).
Both run ``--rounds`` times, alternating; the table shows their medians (this machine's speed drifts by
a fifth from one minute to the next, so one forward-only run against one end-to-end run misleads).

Run:
    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_folder.py [--images 200,1000] [--rounds 3] [--workers 1]
        [--model efficientnet_lite0 | resnet50] [--megapixels 12 --top-k 3]

``--megapixels 12`` makes every image a 12 MP photo (4000 × 3000): the peak memory then shows whether
maps are held per batch or per image.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib import cbook
from PIL import Image

import gradcam
from gradcam.apps.pipeline.local import find_images
from gradcam.io.images import load_image

CHILD = """
import sys, time, torch
torch.set_num_threads({threads})
from gradcam.cli import main
start = time.perf_counter()
status = main({argv!r})
seconds = time.perf_counter() - start
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
print(f"RESULT {{seconds}} {{peak}} {{status}}")
"""


def sample_photos() -> list[Image.Image]:
    import skimage.data

    photos = [Image.fromarray(getattr(skimage.data, n)()) for n in ("chelsea", "coffee", "rocket", "astronaut")]
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(Image.open(f).convert("RGB"))
    return photos


def make_images(folder: Path, count: int, seed: int = 0, megapixels: float | None = None) -> None:
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        scale = rng.uniform(0.6, 1.6)
        if megapixels:  # the crop blown up to the given size, a camera photo's
            scale = (megapixels * 1e6 / (cw * ch)) ** 0.5
        crop = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((max(32, int(cw * scale)), max(32, int(ch * scale))))
        crop.save(folder / f"photo{i:05d}.jpg", quality=90)


def forward_only(folder: Path, batch_size: int, model: str, weights: str | None) -> float:
    bundle = gradcam.load_model(model, weights)
    files = find_images([folder])
    batches = [bundle.preprocess.batch([load_image(f) for f in files[i : i + batch_size]])
               for i in range(0, len(files), batch_size)]
    with torch.inference_mode():
        bundle.module(batches[0])  # warm-up
        start = time.perf_counter()
        for x in batches:
            bundle.module(x)
        return len(files) / (time.perf_counter() - start)


def end_to_end(folder: Path, out: Path, batch_size: int, workers: int, threads: int, model: str,
               weights: str | None, extra: list[str]) -> tuple[float, float]:
    argv = ["explain", str(folder), "--out", str(out), "--quiet", "--batch-size", str(batch_size),
            "--workers", str(workers), "--model", model] + (["--weights", weights] if weights else []) + extra
    done = subprocess.run([sys.executable, "-c", CHILD.format(threads=threads, argv=argv)],
                          capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise SystemExit(done.stderr[-2000:])
    seconds, peak, status = line[0].split()[1:]
    count = len(find_images([folder]))
    return count / float(seconds), float(peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="200,1000")
    parser.add_argument("--rounds", type=int, default=3, help="forward-only and end-to-end runs, alternating; medians")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="the bundled model, or a torchvision name run with seeded random weights")
    parser.add_argument("--megapixels", type=float, help="every image this many megapixels (default: mixed sizes)")
    parser.add_argument("--top-k", type=int, help="explain the K best classes of each image")
    parser.add_argument("--format", default="png", help="picture format: png, jpg or webp")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")
    args = parser.parse_args()
    extra = (["--top-k", str(args.top_k)] if args.top_k else []) + ["--format", args.format,
                                                                     "--precision", args.precision]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.workers} worker(s), "
          f"{args.model}, Grad-CAM{' top-' + str(args.top_k) if args.top_k else ''} {args.precision}, "
          f"overlays written as {args.format}"
          + (f", {args.megapixels:g} MP photos" if args.megapixels else ""))
    print(f"  {'images':>7}{'forward img/s':>15}{'end-to-end img/s':>18}{'ratio':>7}{'peak RSS MiB':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = None
        if args.model != "efficientnet_lite0":  # no hub here: seeded random weights in a local file
            torch.manual_seed(0)
            weights = str(Path(tmp) / "weights.pth")
            torch.save(gradcam.load_model(args.model, pretrained=False).module.state_dict(), weights)
        for count in (int(n) for n in args.images.split(",")):
            folder = Path(tmp) / f"in{count}"
            make_images(folder, count, megapixels=args.megapixels)
            forwards, ends, peaks = [], [], []
            for r in range(args.rounds):  # alternating, so that a slower minute of the machine hits both
                if r % 2 == 0:
                    forwards.append(forward_only(folder, args.batch_size, args.model, weights))
                e2e, peak = end_to_end(folder, Path(tmp) / f"out{count}.{r}", args.batch_size, args.workers,
                                       args.threads, args.model, weights, extra)
                ends.append(e2e)
                peaks.append(peak)
                if r % 2 == 1:
                    forwards.append(forward_only(folder, args.batch_size, args.model, weights))
            fwd, e2e = statistics.median(forwards), statistics.median(ends)
            print(f"  {count:>7}{fwd:>15.1f}{e2e:>18.1f}{e2e / fwd:>7.2f}{max(peaks):>14.0f}", flush=True)


if __name__ == "__main__":
    main()

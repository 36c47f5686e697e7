"""Trust metrics on ResNet-50 (seeded random init, 224², CPU) against their references, same maps, same steps.

1. Deletion and insertion: ours (`DeletionInsertion`, torchcam's protocol) against torchcam 0.5's
   `DeletionInsertionMetric` (which computes its own Grad-CAM: ours is timed with our Grad-CAM too).
2. ROAD: ours (`ROAD`, protocol "pytorch-grad-cam") against pytorch-grad-cam's `ROADCombined`, the same
   percentiles, the same maps; and the imputation alone against its scipy solve.

Ours runs in each of ``--precisions`` (the metrics' ``precision``: fp32, bf16, fp16, auto; our Grad-CAM in
the same precision; the metrics' default memory format, channels-last for ResNet-50); the references in
float32, as they run. Contenders run interleaved in one process, each round in turn; medians over rounds
and the ratio ours ÷ reference are printed with the CPU model and its bf16 flags.

Run:
    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_trust.py [--images 64] [--rounds 1] [--threads 2] \
        [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import gradcam
from gradcam.metrics.imputation import noisy_linear_impute
from gradcam.metrics.road import ROAD

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import spread_init  # noqa: E402  (seeded, spread BatchNorm/Linear values)
from machine import cpu  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="images per metric call")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--percentiles", default="10,20,30,40,50,60,70,80,90")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: deletion, road")
    parser.add_argument("--precisions", default="fp32,bf16", help="ours in each (fp32, bf16, fp16, auto)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = spread_init(torchvision.models.resnet50(), 0).eval()
    x = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    batches = list(x.split(args.batch))
    percentiles = [int(p) for p in args.percentiles.split(",")]
    print(f"ResNet-50 224², {args.images} images in batches of {args.batch}, {args.threads} threads; {cpu()}")
    print("(our deletion rows include computing our Grad-CAM maps, as torchcam's metric computes its own)")

    precisions = args.precisions.split(",")
    cam = gradcam.GradCAM(model, "layer4")
    cams = {p: gradcam.GradCAM(model, "layer4", precision=p) for p in precisions}
    maps = [cam(b).maps for b in batches]
    classes = [cam(b).targets for b in batches]
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        if "deletion" not in args.skip:
            from torchcam.methods import GradCAM as TorchcamGradCAM
            from torchcam.metrics import DeletionInsertionMetric

            for p in precisions:
                ours = gradcam.DeletionInsertion(model, steps=args.steps, batch_size=32, precision=p)
                times.setdefault(f"deletion: ours {p}", []).append(timed(
                    lambda ours=ours, p=p: [ours(b, cams[p](b).maps, None) for b in batches]))
            extractor = TorchcamGradCAM(model, "layer4")
            try:
                reference = DeletionInsertionMetric(extractor, functools.partial(torch.softmax, dim=-1),
                                                    steps=args.steps, batch_size=32)
                times.setdefault("deletion: torchcam", []).append(timed(lambda: [reference.update(b) for b in batches]))
            finally:
                extractor.remove_hooks()
        if "road" not in args.skip:
            from pytorch_grad_cam.metrics.road import ROADCombined
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

            for p in precisions:
                ours = ROAD(model, percentiles=percentiles, protocol="pytorch-grad-cam", batch_size=32, precision=p)
                times.setdefault(f"ROAD: ours {p}", []).append(timed(
                    lambda ours=ours: [ours(b, m, c) for b, m, c in zip(batches, maps, classes)]))
            reference = ROADCombined(percentiles)
            times.setdefault("ROAD: pytorch-grad-cam", []).append(timed(lambda: [
                reference(b, m.numpy(), [ClassifierOutputSoftmaxTarget(int(k)) for k in c], model)
                for b, m, c in zip(batches, maps, classes)]))
    for name, values in times.items():
        print(f"{name:<40} {statistics.median(values):8.1f} s")
    for part, reference in (("deletion", "deletion: torchcam"), ("ROAD", "ROAD: pytorch-grad-cam")):
        for p in precisions:
            ours = f"{part}: ours {p}"
            if ours in times and reference in times:
                ratio = statistics.median(times[ours]) / statistics.median(times[reference])
                print(f"{ours} ÷ reference = {ratio:.2f}")
    if "road" not in args.skip:
        removed = maps[0] >= torch.quantile(maps[0].flatten(1), 0.5, dim=1).view(-1, 1, 1)
        solve = timed(lambda: noisy_linear_impute(batches[0], removed))
        print(f"imputation alone, 50 % removed: {solve / len(batches[0]) * 1000:.0f} ms per image")


if __name__ == "__main__":
    main()

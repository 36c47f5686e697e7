"""Grad-CAM speed on CPU: gradcam vs pytorch-grad-cam, captum and torchcam, with forward-only as the floor.

Every contender makes the full-resolution (224x224), per-image min-max normalised Grad-CAM map of the
predicted class of an untrained, seeded ResNet-50 (layer4). The contenders are timed interleaved in one
process: each round runs every contender once, in an order that rotates from round to round, and the
table gives medians over rounds. Before timing, each reference's maps are checked against ours.

Run:
    python benchmarks/bench_gradcam.py [--batch-sizes 1,16] [--repeats 20] [--threads 2] [--warmup 2]
Optionally with tcmalloc (Debian package libtcmalloc-minimal4):
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/bench_gradcam.py
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

import gradcam

SIZE = (224, 224)


def minmax(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image min-max of (B, H, W) maps."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    return (maps - lo) / (hi - lo).clamp_min(eps)


def make_contenders(base: torch.nn.Module) -> dict:
    """name -> fn(x) returning (B, 224, 224) maps (tensor or ndarray).

    Fairness: pytorch-grad-cam and torchcam keep forward hooks on the model for as long as their
    extractor lives, so every contender gets its OWN deep copy of the same weights; no contender ever
    runs through another one's hooks. Extractors are built once, outside the timed region.
    """
    import pytorch_grad_cam
    import torchcam.methods
    from captum.attr import LayerAttribution, LayerGradCam

    models = {name: copy.deepcopy(base).eval() for name in ("forward", "gradcam", "pgc", "captum", "torchcam")}

    def forward_only(x):
        with torch.no_grad():
            return models["forward"](x)

    ours = gradcam.GradCAM(models["gradcam"], target_layer="layer4")

    pgc = pytorch_grad_cam.GradCAM(model=models["pgc"], target_layers=[models["pgc"].layer4])

    def pgc_fn(x):
        return pgc(input_tensor=x, targets=None)  # picks the argmax class itself; min-max, cv2 resize, min-max

    cap_model = models["captum"]
    cap = LayerGradCam(cap_model, cap_model.layer4)

    def captum_fn(x):
        with torch.no_grad():  # captum needs the class up front: one extra forward
            targets = cap_model(x).argmax(1)
        attr = cap.attribute(x, target=targets, relu_attributions=True)  # (B, 1, 7, 7)
        return minmax(LayerAttribution.interpolate(attr, SIZE, "bilinear")[:, 0])

    tc_model = models["torchcam"]
    tc = torchcam.methods.GradCAM(tc_model, target_layer="layer4")

    def torchcam_fn(x):
        with torch.enable_grad():  # its hooks capture the graph of this forward
            scores = tc_model(x)
            cams = tc(class_idx=scores.argmax(1).tolist(), scores=scores, normalized=False)[0]  # ReLU'd (B, 7, 7)
        return minmax(F.interpolate(cams[:, None], size=SIZE, mode="bilinear", align_corners=False)[:, 0])

    return {
        "forward-only": forward_only,
        "gradcam (ours)": lambda x: ours(x).maps,
        "pytorch-grad-cam": pgc_fn,
        "captum": captum_fn,
        "torchcam": torchcam_fn,
    }, (ours, pgc, cap, tc)  # keep the extractors alive (pytorch-grad-cam removes its hooks in __del__)


def check_equal(contenders: dict, x: torch.Tensor) -> None:
    ref = contenders["gradcam (ours)"](x)
    for name, fn in contenders.items():
        if name in ("forward-only", "gradcam (ours)"):
            continue
        other = torch.as_tensor(fn(x)).float()
        diff = (minmax(other) - minmax(ref)).abs().max().item()
        print(f"  check  {name:<17} max |map - ours| after min-max at 224: {diff:.2e}")


def bench(contenders: dict, x: torch.Tensor, repeats: int, warmup: int) -> dict:
    names = list(contenders)
    times = {name: [] for name in names}
    for r in range(warmup + repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # rotating order
            t0 = time.perf_counter()
            contenders[name](x)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt * 1e3)
    return times


def report(batch: int, times: dict) -> None:
    floor = statistics.median(times["forward-only"])
    ours = statistics.median(times["gradcam (ours)"])
    print(f"\nbatch {batch}  ({len(times['forward-only'])} rounds)")
    print(f"  {'contender':<18} {'median ms':>10} {'IQR ms':>16} {'min ms':>9} {'x forward':>10}")
    for name, ts in times.items():
        q1, _, q3 = statistics.quantiles(ts, n=4)
        med = statistics.median(ts)
        print(f"  {name:<18} {med:>10.1f} {f'{q1:.1f}-{q3:.1f}':>16} {min(ts):>9.1f} {med / floor:>10.3f}")
    for name, ts in times.items():
        if name not in ("forward-only", "gradcam (ours)"):
            print(f"  speedup of gradcam vs {name}: {statistics.median(ts) / ours:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    try:
        import cv2  # pytorch-grad-cam resizes with OpenCV: give it the same thread budget

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    preload = os.environ.get("LD_PRELOAD", "")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"tcmalloc preloaded: {'yes' if 'tcmalloc' in preload else 'no'} (LD_PRELOAD={preload or '-'})")

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    contenders, _keep = make_contenders(model)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(batch))
        print(f"\nbatch {batch}: equivalence check")
        check_equal(contenders, x)
        report(batch, bench(contenders, x, args.repeats, args.warmup))


if __name__ == "__main__":
    main()

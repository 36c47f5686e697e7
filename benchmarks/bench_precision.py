"""Faster than the model's own forward pass: channels-last input and bf16, against a plain fp32 forward.

Contenders, timed interleaved in one process (each round runs each once, in a rotating order; medians):
- forward fp32: the model as the user has it, under no_grad (the reference: 1.00)
- gradcam contiguous: our Grad-CAM with memory_format="contiguous" (the classic cost floor)
- gradcam default: our Grad-CAM as it runs by default (channels-last input for convolution networks)
- gradcam bf16: the default with precision="bf16"
- gradcam fp16: the default with precision="fp16" (``--device cuda`` only: CPUs have no fast float16)
- pytorch-grad-cam: its GradCAM on its own copy of the model
Then the fidelity of bf16: per-image correlation of the raw maps with fp32, the map's peak at the same
cell, and the same class, on the seeded models and on the bundled model's photos. ``--scorecam`` also
times Score-CAM on one image (ResNet-50, all 2048 channels) against pytorch-grad-cam's.

Run:
    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_precision.py [--models resnet50,convnext_tiny]
        [--batch 16] [--repeats 5] [--threads 2] [--scorecam]
    python benchmarks/bench_precision.py --device cuda --batch 64 --scorecam   # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torchvision

import gradcam


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def seeded(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


def layer_of(name: str, model) -> torch.nn.Module:
    return model.layer4 if name.startswith("resnet") else model.features[-1]


def contenders(name: str, base: torch.nn.Module, device: torch.device) -> tuple[dict, list]:
    import pytorch_grad_cam

    models = {k: copy.deepcopy(base).to(device).eval() for k in ("forward", "ours", "pgc")}
    layer = [n for n, m in models["ours"].named_modules() if m is layer_of(name, models["ours"])][0]
    contiguous = gradcam.GradCAM(models["ours"], layer, memory_format="contiguous")
    default = gradcam.GradCAM(models["ours"], layer)
    bf16 = gradcam.GradCAM(models["ours"], layer, precision="bf16")
    pgc = pytorch_grad_cam.GradCAM(model=models["pgc"], target_layers=[layer_of(name, models["pgc"])])

    def forward(x):
        with torch.no_grad():
            return models["forward"](x)

    fns = {
        "forward fp32": forward,
        "gradcam contiguous": lambda x: contiguous(x).maps,
        "gradcam default": lambda x: default(x).maps,
        "gradcam bf16": lambda x: bf16(x).maps,
        "pytorch-grad-cam": lambda x: pgc(input_tensor=x, targets=None),
    }
    if device.type == "cuda":
        fp16 = gradcam.GradCAM(models["ours"], layer, precision="fp16")
        fns["gradcam fp16"] = lambda x: fp16(x).maps
    return fns, [pgc]


def timed(fns: dict, x: torch.Tensor, repeats: int, warmup: int = 1) -> dict:
    names, times = list(fns), {n: [] for n in fns}
    for r in range(warmup + repeats):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            synchronize(x.device)
            t0 = time.perf_counter()
            fns[n](x)
            synchronize(x.device)
            if r >= warmup:
                times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fidelity(label: str, model: torch.nn.Module, x: torch.Tensor, precision: str = "bf16") -> None:
    fp32 = gradcam.GradCAM(model)(x, normalize="none")
    low = gradcam.GradCAM(model, precision=precision)
    same_class = low(x, normalize="none").targets
    fixed = low(x, targets=fp32.targets, normalize="none")  # the map of the same class
    corr = correlation(fixed.raw, fp32.raw)
    peaks = (fixed.raw.flatten(1).argmax(1) == fp32.raw.flatten(1).argmax(1)).sum()
    print(f"  {label:<34} {precision} correlation min {float(corr.min()):.5f} median {float(corr.median()):.5f}; "
          f"peak at the same cell {int(peaks)}/{len(x)}; same class {int((same_class == fp32.targets).sum())}/{len(x)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,convnext_tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scorecam", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from gradcam.engine.precision import fast_bf16

    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads")
    print(f"torch {torch.__version__}, {where}, batch {args.batch} × 224², "
          f"native bf16: {fast_bf16(device)}, LD_PRELOAD={os.environ.get('LD_PRELOAD', '-')}")
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    names = [n for n in args.models.split(",") if n]  # --models "" with --scorecam: Score-CAM only
    for name in names:
        model = seeded(name)
        fns, _keep = contenders(name, model, device)
        ms = timed(fns, x, args.repeats)
        floor = ms["forward fp32"]
        print(f"\n{name} (seeded), medians of {args.repeats} interleaved rounds")
        print(f"  {'contender':<20}{'ms':>9}{'÷ forward fp32':>16}")
        for n, t in ms.items():
            print(f"  {n:<20}{t:>9.1f}{t / floor:>16.2f}")
        print(f"  pytorch-grad-cam ÷ gradcam default: {ms['pytorch-grad-cam'] / ms['gradcam default']:.2f}x; "
              f"÷ gradcam bf16: {ms['pytorch-grad-cam'] / ms['gradcam bf16']:.2f}x"
              + (f"; ÷ gradcam fp16: {ms['pytorch-grad-cam'] / ms['gradcam fp16']:.2f}x"
                 if "gradcam fp16" in ms else ""))
    precisions = ("bf16", "fp16") if device.type == "cuda" else ("bf16",)
    if names:
        print(f"\n{' and '.join(precisions)} against fp32 (the same class explained; classes compared separately)")
    for name in names:
        for precision in precisions:
            fidelity(f"{name} (seeded), random input", seeded(name).to(device), x, precision)
    try:
        import skimage.data
        from PIL import Image

        bundle = gradcam.load_model(device=device)
        photos = [Image.fromarray(getattr(skimage.data, n)()) for n in ("chelsea", "coffee", "rocket", "astronaut",
                                                                         "camera")]
        for precision in precisions:
            fidelity("efficientnet_lite0 (bundled), 5 photos", bundle.module,
                     bundle.preprocess.batch(photos).to(device),
                     precision)
    except ImportError:
        pass
    if args.scorecam:
        import pytorch_grad_cam

        model = seeded("resnet50").to(device)
        one = x[:1]
        ours = {p: gradcam.create_method("scorecam", model, "layer4", precision=p, batch_size=64)
                for p in ("fp32", "bf16")}
        theirs = copy.deepcopy(model)
        ref = pytorch_grad_cam.ScoreCAM(model=theirs, target_layers=[theirs.layer4])
        ref.batch_size = 64
        seconds, maps = {}, {}
        for label, fn in (("gradcam fp32", lambda: ours["fp32"](one).maps),
                          ("gradcam bf16", lambda: ours["bf16"](one).maps),
                          ("pytorch-grad-cam", lambda: torch.as_tensor(ref(input_tensor=one, targets=None)))):
            t0 = time.perf_counter()
            maps[label] = fn()
            seconds[label] = time.perf_counter() - t0
        print("\nScore-CAM, one image, ResNet-50 (seeded), 2048 channels")
        for label, s in seconds.items():
            print(f"  {label:<18}{s:>8.1f} s")
        print(f"  pytorch-grad-cam ÷ gradcam bf16: {seconds['pytorch-grad-cam'] / seconds['gradcam bf16']:.2f}x; "
              f"map correlation bf16 vs fp32: {float(correlation(maps['gradcam bf16'], maps['gradcam fp32'])[0]):.5f}")


if __name__ == "__main__":
    main()

"""Grad-CAM speed on vision transformers (CPU): gradcam vs pytorch-grad-cam on ViT-B/16 and Swin-T, forward as floor.

Each model is timm's, untrained and seeded (torch.manual_seed(0), pretrained=False), in eval mode, on a
batch of 224² random inputs. Every contender explains the predicted class of each sample and gives the
full-resolution, per-image min-max normalised map. Contenders, timed interleaved in one process (each
round runs each once, in a rotating order; the table gives medians over rounds), each on its OWN deep
copy of the same weights (pytorch-grad-cam keeps hooks on its model for as long as it lives):
- forward-only: the model's fp32 forward under torch.inference_mode (the floor: 1.00)
- gradcam: ``gradcam.GradCAM``
- pytorch-grad-cam: its ``GradCAM`` with its documented ``reshape_transform``

Layers, the same for both libraries:
- vit_base_patch16_224: ``blocks[-1].norm1`` (B, 197, 768), pytorch-grad-cam's documented ViT layer and
  gradcam's automatic one; the class token dropped, the 196 patch tokens laid out 14×14
  (pytorch-grad-cam: ``vit_reshape_transform``; gradcam reads the tokens by itself).
- swin_tiny_patch4_window7_224: ``layers[-1].blocks[-1].norm2``, the layer of pytorch-grad-cam's
  swinT_example.py. In timm 1.0.x the Swin stages, blocks and a block's norm1 give channels-last
  (B, 7, 7, 768), but a block flattens its tokens before its MLP, so norm2 gives (B, 49, 768): a token
  sequence with no prefix token, in raster order of the 7×7 grid. Neither library can read that alone,
  so both get pytorch-grad-cam's ``swinT_reshape_transform`` (reshape to (B, 7, 7, C), channels to
  axis 1), which is also right for (B, 7, 7, C) outputs. (gradcam's own automatic Swin layer is the
  final ``norm``, channels-last, read without a reshape; it is printed, not timed.)

Maps are compared before timing: per sample, max |Δ| and Pearson correlation of the two min-max
normalised 224² maps. The ratios printed are gradcam ÷ forward-only and pytorch-grad-cam ÷ gradcam.

Run:
    python benchmarks/bench_layouts.py [--models vit_base_patch16_224,swin_tiny_patch4_window7_224]
        [--batch 16] [--rounds 5] [--threads 2] [--size 224] [--warmup 1]
Optionally with tcmalloc (Debian package libtcmalloc-minimal4):
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/bench_layouts.py
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import time

import torch

import gradcam

MODELS = "vit_base_patch16_224,swin_tiny_patch4_window7_224"


def minmax(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image min-max of (B, H, W) maps."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    return (maps - lo) / (hi - lo).clamp_min(eps)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of (B, ...) maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def seeded(name: str, size: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=size).eval()


def layer_and_reshape(name: str, model: torch.nn.Module, size: int):
    """(module, reshape for pytorch-grad-cam, reshape for gradcam or None: it reads the layer itself)."""
    from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform

    if name.startswith("vit"):
        grid = size // 16
        return model.blocks[-1].norm1, functools.partial(vit_reshape_transform, height=grid, width=grid), None
    if name.startswith("swin"):
        grid = size // 32
        swin = functools.partial(swinT_reshape_transform, height=grid, width=grid)
        return model.layers[-1].blocks[-1].norm2, swin, swin  # (B, 49, C) tokens: see the module docstring
    raise SystemExit(f"no layer known for {name}: vit_* or swin_* only")


def output_shapes(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict:
    """The output shape of each named module for input ``x`` (one forward with hooks)."""
    modules, shapes = dict(model.named_modules()), {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
               for n in names]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def contenders(name: str, base: torch.nn.Module, size: int) -> tuple[dict, list]:
    """name -> fn(x) returning (B, H, W) maps (tensor or ndarray), or the logits for forward-only."""
    import pytorch_grad_cam

    models = {k: copy.deepcopy(base).eval() for k in ("forward", "ours", "pgc")}
    layer, pgc_reshape, ours_reshape = layer_and_reshape(name, models["ours"], size)
    layer_name = [n for n, m in models["ours"].named_modules() if m is layer][0]
    ours = gradcam.GradCAM(models["ours"], layer_name, reshape=ours_reshape)
    pgc_layer, _, _ = layer_and_reshape(name, models["pgc"], size)
    pgc = pytorch_grad_cam.GradCAM(model=models["pgc"], target_layers=[pgc_layer], reshape_transform=pgc_reshape)

    def forward(x):
        with torch.inference_mode():
            return models["forward"](x)

    def pgc_fn(x):
        # targets=None: it takes the argmax of its own forward and builds ClassifierOutputTarget(class) for
        # each sample, as gradcam's default does (passing them would cost an extra forward pass here)
        return pgc(input_tensor=x, targets=None)  # min-max, cv2 bilinear resize, min-max

    return {
        "forward-only": forward,
        "gradcam": lambda x: ours(x).maps,
        "pytorch-grad-cam": pgc_fn,
    }, [ours, pgc, layer_name]  # keep the extractors alive (pytorch-grad-cam removes its hooks in __del__)


def check_maps(fns: dict, keep: list, x: torch.Tensor) -> tuple[float, float]:
    """Per sample max |Δ| and correlation of the min-max maps; returns the worst of each."""
    ours_cam, pgc, layer_name = keep
    out = ours_cam(x)
    theirs = torch.as_tensor(fns["pytorch-grad-cam"](x)).float()
    classes = pgc.outputs.argmax(1)
    a, b = minmax(out.maps.float()), minmax(theirs)
    diff, corr = (a - b).flatten(1).abs().amax(1), correlation(a, b)
    flat = out.maps.flatten(1)
    print(f"  layer {layer_name}; same class {int((classes == out.targets).sum())}/{len(x)}; "
          f"constant maps: ours {int((flat.amax(1) == flat.amin(1)).sum())}, "
          f"pytorch-grad-cam {int((theirs.flatten(1).amax(1) == theirs.flatten(1).amin(1)).sum())}")
    print("  max |Δmap| per sample: " + " ".join(f"{d:.1e}" for d in diff.tolist()))
    print("  correlation per sample: " + " ".join(f"{c:.8f}" for c in corr.tolist()))
    if diff.max() > 2e-3:
        print(f"  WARNING: maps differ by {diff.max():.2e} > 2e-3 after min-max")
    return float(diff.max()), float(corr.min())


def timed(fns: dict, x: torch.Tensor, rounds: int, warmup: int) -> dict:
    names, times = list(fns), {n: [] for n in fns}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:  # rotating order
            t0 = time.perf_counter()
            fns[n](x)
            if r >= warmup:
                times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    try:
        import cv2  # pytorch-grad-cam resizes with OpenCV: give it the same thread budget

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    import timm

    preload = os.environ.get("LD_PRELOAD", "")
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch} × {args.size}², tcmalloc preloaded: {'yes' if 'tcmalloc' in preload else 'no'} "
          f"(LD_PRELOAD={preload or '-'})")
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    for name in (n for n in args.models.split(",") if n):
        model = seeded(name, args.size)
        print(f"\n{name} (seeded, untrained)")
        if name.startswith("swin"):
            last = "layers.3.blocks.1" if "layers.3.blocks.1" in dict(model.named_modules()) else None
            shown = ["layers.3", "norm"] + ([f"{last}.norm1", f"{last}.norm2", last] if last else [])
            shapes = output_shapes(model, shown, x[:1])
            print("  output shapes: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))
            auto = gradcam.GradCAM(model)
            auto(x[:1])
            print(f"  gradcam's automatic layer: {', '.join(auto.layer_names)} (not timed)")
        fns, keep = contenders(name, model, args.size)
        diff, corr = check_maps(fns, keep, x)
        ms = timed(fns, x, args.rounds, args.warmup)
        for n, t in ms.items():
            print(f"  {n:<18}{t:>9.1f} ms")
        rows.append((name, ms, diff, corr))
        del fns, keep

    print(f"\nbatch {args.batch} × {args.size}², {args.threads} threads, medians of {args.rounds} interleaved rounds "
          f"(ms); targets: gradcam ÷ forward ≤ 1.10, pytorch-grad-cam ÷ gradcam ≥ 2.5\n")
    print("| model | forward-only ms | gradcam ms | pytorch-grad-cam ms | gradcam ÷ forward "
          "| pytorch-grad-cam ÷ gradcam | max \\|Δmap\\| | min correlation |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, ms, diff, corr in rows:
        f, g, p = ms["forward-only"], ms["gradcam"], ms["pytorch-grad-cam"]
        print(f"| {name} | {f:.1f} | {g:.1f} | {p:.1f} | {g / f:.3f} | {p / g:.2f} | {diff:.1e} | {corr:.8f} |")


if __name__ == "__main__":
    main()

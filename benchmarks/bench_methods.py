"""Every method on ResNet-50 (seeded random init, layer4, 224², CPU) against pytorch-grad-cam's version.

Three parts, each printing milliseconds and ratios:
1. Gradient and cheap methods, batch 16: forward-only, ours and pytorch-grad-cam (captum for the guided
   methods) timed interleaved in one process, medians over rounds; every pair's maps are compared
   first (after the same min-max).
2. Score-CAM and Ablation-CAM, one image: ours vs pytorch-grad-cam, interleaved, with the maps'
   largest difference (pytorch-grad-cam given align_corners=False masks, as the paper and we use).
   Also on the bundled, trained EfficientNet-Lite0, where many channels share a mask.
3. Peak memory (VmHWM of a fresh process, Linux) of Score-CAM over 64, 512 and 2048 channels.
4. SS-CAM and IS-CAM against torchcam's (ResNet-18 layer1, every channel, the same samples) and RISE
   against a plain loop of one masked copy per forward; each of ours also with precision="bf16" (the masked
   passes only), its time against the fp32 reference and its map's largest difference from our fp32 map.
5. FullGrad against pytorch-grad-cam's (ResNet-50, every Conv2d/BatchNorm2d) and LeGrad against torchcam's
   (a torchvision ViT-B/16 of random init, every block, the mean-token pooling they share), interleaved.

Run:
    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_methods.py [--threads 2] [--repeats 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision

import gradcam

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import spread_init  # noqa: E402  (seeded, spread BatchNorm/Linear values)
from machine import cpu  # noqa: E402

GRADIENT = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "cam",
            "guided-backprop", "guided-gradcam", "eigengradcam", "kpcacam", "fem", "shapleycam", "finercam"]
# Each contender's options and target where they are not the default: ShapleyCAM explains the paper's ReST
# target (a logit's Hessian is 0 after layer4), Finer-CAM one comparison class (where pytorch-grad-cam's
# probability weight cancels).
OPTIONS = {"finercam": {"comparisons": 1}}
SIGN_FREE = {"eigencam", "eigengradcam", "kpcacam"}  # the reference's sign is arbitrary: maps not compared
# pytorch-grad-cam's FEM weights the activations, the paper the binary maps; its Finer-CAM's softmax weight
# p_d of the comparison class underflows to 0 on these random-init logits (gaps > 200): a flat map.
OTHER_FORMULA = {"fem", "finercam"}


def rest(classes: torch.Tensor):
    """ReST (Cai 2025): y^c + log softmax(y)^c, pytorch-grad-cam's ClassifierOutputReST."""
    return lambda o: o.gather(1, classes[:, None])[:, 0] + o.log_softmax(1).gather(1, classes[:, None])[:, 0]


TARGETS = {"shapleycam": rest}


def resnet50() -> nn.Module:
    torch.manual_seed(0)
    return spread_init(torchvision.models.resnet50(), 0).eval()


def minmax(maps) -> torch.Tensor:
    maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).float()
    flat = maps.flatten(1)
    shape = (-1,) + (1,) * (maps.dim() - 1)
    lo, hi = flat.amin(1).view(shape), flat.amax(1).view(shape)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def references(model: nn.Module) -> dict:
    """method -> fn(x, classes) of the reference library, on its own copy of the model."""
    import pytorch_grad_cam as pgc
    from captum.attr import GuidedBackprop, GuidedGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    def pgc_fn(cls, target=ClassifierOutputTarget):
        m = copy.deepcopy(model)
        cam = cls(model=m, target_layers=[m.layer4])
        return lambda x, classes: cam(input_tensor=x, targets=[target(int(c)) for c in classes])

    def finer_fn():  # it picks the predicted class itself; one comparison class
        m = copy.deepcopy(model)
        cam = pgc.FinerCAM(m, [m.layer4])
        return lambda x, classes: cam(input_tensor=x, targets=None, comparison_categories=[1])

    def captum_fn(kind):
        m = copy.deepcopy(model)
        attr = GuidedBackprop(m) if kind == "gb" else GuidedGradCam(m, m.layer4)
        extra = {} if kind == "gb" else {"interpolate_mode": "bilinear"}
        return lambda x, classes: attr.attribute(x.clone().requires_grad_(True), target=classes, **extra).detach()

    return {"gradcam": pgc_fn(pgc.GradCAM), "gradcam++": pgc_fn(pgc.GradCAMPlusPlus),
            "xgradcam": pgc_fn(pgc.XGradCAM), "hirescam": pgc_fn(pgc.HiResCAM), "layercam": pgc_fn(pgc.LayerCAM),
            "eigencam": pgc_fn(pgc.EigenCAM), "guided-backprop": captum_fn("gb"),
            "guided-gradcam": captum_fn("ggc"),
            "scorecam": pgc_fn(pgc.ScoreCAM), "ablationcam": pgc_fn(pgc.AblationCAM),
            "eigengradcam": pgc_fn(pgc.EigenGradCAM), "kpcacam": pgc_fn(pgc.KPCA_CAM), "fem": pgc_fn(pgc.FEM),
            "shapleycam": pgc_fn(pgc.ShapleyCAM, ClassifierOutputReST), "finercam": finer_fn()}


def interleaved(contenders: dict, rounds: int) -> dict:
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def part_gradient(model, x, repeats, methods=GRADIENT):
    refs = references(model)
    ours_model = copy.deepcopy(model)
    forward_model = copy.deepcopy(model)
    with torch.no_grad():
        classes = forward_model(x).argmax(1)
    print(f"\n1. batch {len(x)}, 224², medians of {repeats} interleaved rounds (ms; × = ÷ forward-only)")
    print(f"  {'method':<16}{'ours':>9}{'×':>7}{'reference':>11}{'×':>7}{'ours faster':>13}{'max |Δmap|':>12}")
    for name in methods:
        method = gradcam.create_method(name, ours_model, None if name == "guided-backprop" else "layer4",
                                       **OPTIONS.get(name, {}))
        target = TARGETS[name](classes) if name in TARGETS else None
        ours = lambda: method(x, targets=target)  # noqa: E731
        ref = refs.get(name)
        out = ours()
        diff = "-"
        if ref is not None and name not in SIGN_FREE | OTHER_FORMULA:
            diff = f"{(out.maps - minmax(ref(x, classes))).abs().max():.1e}"
        contenders = {"forward": torch.no_grad()(lambda: forward_model(x)), "ours": ours}
        if ref is not None:
            contenders["ref"] = lambda: ref(x, classes)
        med = interleaved(contenders, repeats)
        f = med["forward"]
        row = f"  {name:<16}{med['ours']:>9.1f}{med['ours'] / f:>7.3f}"
        if ref is not None:
            row += f"{med['ref']:>11.1f}{med['ref'] / f:>7.3f}{med['ref'] / med['ours']:>12.2f}×{diff:>12}"
        print(row, flush=True)
    print(f"  forward-only: {f:.1f} ms")


def part_expensive(model, x, label, rounds, layer="layer4"):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    print(f"\n2. {label}, one image, {rounds} interleaved round(s) (s)")
    with torch.no_grad():
        classes = model(x).argmax(1)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    plain = nn.UpsamplingBilinear2d
    for name, cls in (("scorecam", pgc.ScoreCAM), ("ablationcam", pgc.AblationCAM)):
        mine_model, their_model = copy.deepcopy(model), copy.deepcopy(model)
        ours = gradcam.create_method(name, mine_model, layer)
        theirs = cls(model=their_model, target_layers=[their_model.get_submodule(layer)])
        nn.UpsamplingBilinear2d = lambda size: nn.Upsample(size=size, mode="bilinear", align_corners=False)
        try:
            out = {}
            med = interleaved({"ours": lambda: out.__setitem__("ours", ours(x, targets=classes).maps),
                               "ref": lambda: out.__setitem__("ref", theirs(input_tensor=x, targets=targets))},
                              rounds)
        finally:
            nn.UpsamplingBilinear2d = plain
        diff = (out["ours"] - minmax(out["ref"])).abs().max()
        print(f"  {name:<12} ours {med['ours'] / 1000:8.2f}   pytorch-grad-cam {med['ref'] / 1000:8.2f}   "
              f"ours faster {med['ref'] / med['ours']:5.2f}×   max |Δmap| {diff:.1e}", flush=True)


def part_family(size, samples, masks, rounds, layer="layer1"):
    """SS-CAM and IS-CAM against torchcam's on the same settings (every channel of ``layer``, the same number
    of samples; torchcam's noise, ours seeded), RISE against a plain loop: one masked copy per forward."""
    import torch.nn.functional as F
    import torchcam.methods as tc

    model = spread_init(torchvision.models.resnet18(weights=None), 0)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        c = int(model(x).argmax(1))
    print(f"\n4. ResNet-18 (random init) {layer}, {size}², one image, {rounds} interleaved round(s) (s)")
    for name, cls in (("sscam", tc.SSCAM), ("iscam", tc.ISCAM)):
        ours = gradcam.create_method(name, copy.deepcopy(model), layer, num_samples=samples)
        low = gradcam.create_method(name, copy.deepcopy(model), layer, num_samples=samples, precision="bf16")
        theirs_model = copy.deepcopy(model)

        def reference(cls=cls, theirs_model=theirs_model):
            with cls(theirs_model, layer, batch_size=32, num_samples=samples, input_shape=(3, size, size)) as ex:
                with torch.no_grad():
                    logits = theirs_model(x)
                return ex(c, logits)[0]

        med = interleaved({"ours": lambda ours=ours: ours(x, targets=[c]),
                           "bf16": lambda low=low: low(x, targets=[c]), "ref": reference}, rounds)
        print(f"  {name:<12} ours {med['ours'] / 1000:8.2f}   torchcam {med['ref'] / 1000:8.2f}   "
              f"ours faster {med['ref'] / med['ours']:5.2f}×", flush=True)
        bf16_row(name, med, "torchcam", ours(x, targets=[c]).maps, low(x, targets=[c]).maps)
    rise = gradcam.create_method("rise", copy.deepcopy(model), masks=masks)
    rise_low = gradcam.create_method("rise", copy.deepcopy(model), masks=masks, precision="bf16")
    loop_model = copy.deepcopy(model)

    def plain_loop():  # the paper's recipe, one mask at a time
        gen = torch.Generator().manual_seed(0)
        step = -(-size // 7)
        saliency = torch.zeros(size, size)
        for _ in range(masks):
            grid = (torch.rand((1, 1, 7, 7), generator=gen) < 0.5).float()
            up = F.interpolate(grid, size=(8 * step, 8 * step), mode="bilinear", align_corners=False)[0, 0]
            dy, dx = torch.randint(0, step, (2,), generator=gen).tolist()
            mask = up[dy:dy + size, dx:dx + size]
            with torch.no_grad():
                saliency += loop_model(x * mask).softmax(1)[0, c] * mask
        return saliency / (masks * 0.5)

    med = interleaved({"ours": lambda: rise(x, targets=[c]), "bf16": lambda: rise_low(x, targets=[c]),
                       "ref": plain_loop}, rounds)
    print(f"  {'rise':<12} ours {med['ours'] / 1000:8.2f}   plain loop {med['ref'] / 1000:6.2f}   "
          f"ours faster {med['ref'] / med['ours']:5.2f}×  ({masks} masks)", flush=True)
    bf16_row("rise", med, "plain loop", rise(x, targets=[c]).maps, rise_low(x, targets=[c]).maps)


def bf16_row(name: str, med: dict, reference: str, fp32_maps: torch.Tensor, bf16_maps: torch.Tensor) -> None:
    """Ours in bf16: seconds, ÷ our fp32 time, the fp32 reference's time ÷ ours, and the largest difference
    of the (min-max) maps from our fp32 ones (the same masks and noise: the seeds are the same)."""
    delta = float((bf16_maps.float() - fp32_maps.float()).abs().max())
    print(f"  {name + ' bf16':<12} ours {med['bf16'] / 1000:8.2f}   ÷ ours fp32 {med['bf16'] / med['ours']:5.2f}   "
          f"faster than {reference} (fp32) {med['ref'] / med['bf16']:5.2f}×   max |Δmap| vs fp32 {delta:.2e}",
          flush=True)


def part_input_wide(model, x, rounds, vit_batch=2, vit_layers=12):
    """FullGrad (every biased layer) and LeGrad (every attention block): ours vs the reference, interleaved."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import LeGrad as TorchcamLeGrad

    print(f"\n5. FullGrad (ResNet-50, batch {len(x)}) and LeGrad (ViT-B/16 of {vit_layers} blocks, batch "
          f"{vit_batch}), 224², medians of {rounds} interleaved round(s) (ms)")
    with torch.no_grad():
        classes = model(x).argmax(1)
    ours = gradcam.create_method("fullgrad", copy.deepcopy(model))
    theirs = pgc.FullGrad(copy.deepcopy(model), [])
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    out = {}
    med = interleaved({"ours": lambda: out.__setitem__("ours", ours(x, targets=classes).maps),
                       "ref": lambda: out.__setitem__("ref", theirs(input_tensor=x, targets=targets))}, rounds)
    diff = (out["ours"] - minmax(out["ref"])).abs().max()
    print(f"  {'fullgrad':<12} ours {med['ours']:9.1f}   pytorch-grad-cam {med['ref']:9.1f}   "
          f"ours faster {med['ref'] / med['ours']:5.2f}×   max |Δmap| {diff:.1e}", flush=True)

    torch.manual_seed(0)
    vit = spread_init(torchvision.models.VisionTransformer(224, 16, vit_layers, 12, 768, 3072), 0)
    xv = x[:vit_batch]
    with torch.no_grad():
        vclasses = vit(xv).argmax(1)
    mine = gradcam.create_method("legrad", vit, pooling="mean")
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(vit_layers)]

    def reference():
        with TorchcamLeGrad(vit, blocks) as extractor:
            return extractor(vclasses.tolist(), vit(xv), normalized=False)[0]

    out = {}
    med = interleaved({"ours": lambda: out.__setitem__("ours", mine(xv, targets=vclasses, normalize="none").raw),
                       "ref": lambda: out.__setitem__("ref", reference())}, rounds)
    diff = ((out["ours"] - out["ref"]).abs().amax() / out["ref"].abs().amax()).item()
    print(f"  {'legrad':<12} ours {med['ours']:9.1f}   torchcam {med['ref']:17.1f}   "
          f"ours faster {med['ref'] / med['ours']:5.2f}×   max |Δraw|/max {diff:.1e}", flush=True)


MEMORY_CHILD = """
import json, sys, torch, torchvision
sys.path.insert(0, {tests!r})
import gradcam
from conftest import spread_init

def peak_mib():  # the process's peak resident memory since the last reset
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

torch.set_num_threads({threads})
torch.manual_seed(0)
model = spread_init(torchvision.models.resnet50(), 0).eval()
x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    model(x)
loaded = peak_mib()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak
gradcam.create_method("scorecam", model, "layer4", max_channels={channels})(x)
print(json.dumps({{"loaded": loaded, "peak": peak_mib()}}))
"""


def part_memory(threads):
    print("\n3. Score-CAM peak memory (VmHWM, MiB) of a fresh process, one image, by channels scored")
    print(f"  {'channels':>9}{'model loaded':>14}{'peak in Score-CAM':>19}")
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    for channels in (64, 512, 2048):
        code = MEMORY_CHILD.format(tests=tests, threads=threads, channels=channels)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {channels:>9}{result['loaded']:>14.0f}{result['peak']:>19.0f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--expensive-rounds", type=int, default=1)
    parser.add_argument("--parts", default="1,2,3,4,5")
    parser.add_argument("--family-size", type=int, default=224, help="part 4: the input's side (px)")
    parser.add_argument("--family-samples", type=int, default=5, help="part 4: SS-CAM and IS-CAM's samples")
    parser.add_argument("--family-masks", type=int, default=500, help="part 4: RISE's masks")
    parser.add_argument("--methods", default=",".join(GRADIENT), help="part 1's methods, comma-separated")
    parser.add_argument("--wide-batch", type=int, default=4, help="part 5: FullGrad's batch")
    parser.add_argument("--vit-layers", type=int, default=12, help="part 5: the ViT's blocks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    print(f"torch {torch.__version__}, {args.threads} threads; {cpu()}")
    model = resnet50()
    gen = torch.Generator().manual_seed(1)
    if "1" in parts:
        part_gradient(model, torch.randn(args.batch, 3, 224, 224, generator=gen), args.repeats,
                      args.methods.split(","))
    if "2" in parts:
        part_expensive(model, torch.randn(1, 3, 224, 224, generator=gen),
                       "ResNet-50 (random init) layer4, 2048 channels",
                       args.expensive_rounds)
        import skimage.data
        from PIL import Image

        bundle = gradcam.load_model()
        cat = bundle.preprocess.batch([Image.fromarray(skimage.data.chelsea())])
        part_expensive(bundle.module, cat, "EfficientNet-Lite0 (bundled, trained) bn2, 1280 channels, chelsea",
                       args.expensive_rounds, layer="bn2")
    if "3" in parts:
        part_memory(args.threads)
    if "4" in parts:
        part_family(args.family_size, args.family_samples, args.family_masks, args.expensive_rounds)
    if "5" in parts:
        part_input_wide(model, torch.randn(args.wide_batch, 3, 224, 224, generator=gen), args.expensive_rounds,
                        vit_layers=args.vit_layers)


if __name__ == "__main__":
    main()

"""Several methods on the same images, as the web page's comparison and `gradcam explain --method a,b,...` run
them: the methods that can share a pass from one forward and one backward pass (gradcam.engine.methods.together)
against each method running its own, timed interleaved in one process, medians over rounds. The maps are
compared first (largest difference relative to each map's maximum).

Run:
    python benchmarks/bench_compare.py [--threads 2] [--rounds 5] [--batch 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import gradcam
from gradcam.engine.methods.together import explain_together

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import spread_init  # noqa: E402  (seeded, spread BatchNorm/Linear values)
from machine import cpu  # noqa: E402

SHARING = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam", "eigencam", "fem"]


def rounds_of(contenders: dict, rounds: int, device: torch.device) -> dict:
    times = {name: [] for name in contenders}
    names = list(contenders)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            contenders[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def compare(label: str, model: torch.nn.Module, layer: str, x: torch.Tensor, rounds: int) -> None:
    methods = [gradcam.create_method(name, model, layer) for name in SHARING]
    together = explain_together(methods, x)
    alone = [method(x) for method in methods]
    worst = max(((a.raw - b.raw).abs().amax() / b.raw.abs().amax().clamp_min(1e-12)).item()
                for a, b in zip(together, alone))
    med = rounds_of({"together": lambda: explain_together(methods, x),
                     "alone": lambda: [method(x) for method in methods]}, rounds, x.device)
    print(f"  {label:<34}{med['alone']:>10.1f}{med['together']:>11.1f}{med['alone'] / med['together']:>9.2f}×"
          f"{worst:>12.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu()
    print(f"torch {torch.__version__}, {args.threads} threads, {where}")
    print(f"{len(SHARING)} methods ({', '.join(SHARING)}), batch {args.batch}, medians of {args.rounds} rounds (ms)")
    print(f"  {'model':<34}{'alone':>10}{'together':>11}{'faster':>10}{'max |Δraw|':>12}")
    gen = torch.Generator().manual_seed(0)
    bundle = gradcam.load_model()
    compare("EfficientNet-Lite0 (bundled) bn2", bundle.module.to(device), "bn2",
            torch.randn(args.batch, 3, 224, 224, generator=gen).to(device), args.rounds)
    torch.manual_seed(0)
    resnet = spread_init(torchvision.models.resnet50(), 0).eval()
    compare("ResNet-50 (random init) layer4", resnet.to(device), "layer4",
            torch.randn(args.batch, 3, 224, 224, generator=gen).to(device), args.rounds)


if __name__ == "__main__":
    main()

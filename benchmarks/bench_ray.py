"""The Ray Data engine against the local folder job: the same N images, the same model, the same batch size.

Makes N photo-like JPEGs of mixed sizes (as bench_folder.py does), then for each model (the bundled
EfficientNet-Lite0 and a seeded random ResNet-50) runs, each in a fresh process and alternating:
- local: ``explain_folder`` (the folder job of ``gradcam explain DIR``);
- ray: ``explain_ray`` on a Ray started in that process beforehand (as a cluster is already up), its
  actors using the same CPUs.
Reported per model: images/s end to end (the job's call: model loading, and for Ray the actors' start),
images/s in the steady state (from the first rows in the manifest to the last), the ratios ray ÷ local
(target ≥ 0.8), and the peak memory of each explain actor (and of the local job's process), sampled every
0.5 s: private (USS: what the process alone holds) and resident (RSS: an actor's also counts the pages of Ray's
shared object store it reads its batches from).

Run:
    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_ray.py [--images 500] [--rounds 1]
        [--models efficientnet_lite0,resnet50:random] [--batch-size 16] [--actors 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_folder import make_images  # noqa: E402  (photo-like JPEGs of mixed sizes)
from machine import cpu  # noqa: E402

CHILD = r"""
import json, os, sys, threading, time
import psutil
engine, folder, out, model, batch, actors = sys.argv[1:7]
manifest = os.path.join(out, "manifest.jsonl")
seen, peaks, stop = [], {}, threading.Event()

def memory(process):  # (private, resident) bytes: an actor's resident set counts the object store pages it maps
    info = process.memory_full_info()
    return info.uss, info.rss

def watch():  # rows in the manifest over time; the explain actors' (or this process's) memory, every 0.5 s
    me, tick = psutil.Process(), 0
    while not stop.is_set():
        try:
            with open(manifest, "rb") as f:
                rows = f.read().count(b"\n")
        except OSError:
            rows = 0
        seen.append((time.perf_counter(), rows))
        tick += 1
        if tick % 10 == 1:
            watched = ([c for c in me.children(recursive=True) if "ExplainActor" in " ".join(c.cmdline())]
                       if engine == "ray" else [me])
            for process in watched:
                try:
                    peaks[process.pid] = tuple(map(max, zip(peaks.get(process.pid, (0, 0)), memory(process))))
                except psutil.Error:
                    pass
        time.sleep(0.05)

if engine == "ray":
    import ray
    ray.init(address="local", num_cpus=os.cpu_count(), object_store_memory=512 * 1024**2, include_dashboard=False,
             log_to_driver=False)
    from gradcam.apps.pipeline.ray_engine import explain_ray as run
    options = {"actors": int(actors), "progress_bar": False}
else:
    from gradcam.apps.pipeline.local import explain_folder as run
    options = {"progress_bar": False}
thread = threading.Thread(target=watch, daemon=True)
thread.start()
start = time.perf_counter()
summary = run([folder], out, model=model, batch_size=int(batch), **options)
end = time.perf_counter()
stop.set()
thread.join()
first = next((t for t, rows in seen if rows > 0), start)
rows_first = next((rows for t, rows in seen if rows > 0), 0)
steady = (summary.done + summary.failed - rows_first) / max(end - first, 1e-9)
print("RESULT " + json.dumps({"seconds": end - start, "images": summary.done + summary.failed, "steady": steady,
                              "peaks": sorted(peaks.values()), "threads": __import__("torch").get_num_threads()}))
"""


def run(engine: str, folder: Path, out: Path, model: str, batch: int, actors: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, engine, str(folder), str(out), model, str(batch), str(actors)],
                          capture_output=True, text=True, timeout=3600)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{engine} {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50:random")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--actors", type=int, default=1)
    args = parser.parse_args()
    import os

    import ray
    import torch

    print(f"CPU: {cpu()}; {os.cpu_count()} cores; torch {torch.__version__}, ray {ray.__version__}; "
          f"{args.images} images, batch {args.batch_size}, {args.actors} actor(s), {args.rounds} round(s)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_images(folder, args.images)
        print("| model | engine | images/s end to end | images/s steady | peak memory, private / resident (MiB) |")
        print("|---|---|---|---|---|")
        for model in args.models.split(","):
            found: dict[str, list[dict]] = {"local": [], "ray": []}
            for r in range(args.rounds):
                for engine in ("local", "ray"):
                    found[engine].append(run(engine, folder, Path(tmp) / f"{engine}-{r}-{model}", model,
                                             args.batch_size, args.actors))
            rates = {}
            for engine, results in found.items():
                end = statistics.median(x["images"] / x["seconds"] for x in results)
                steady = statistics.median(x["steady"] for x in results)
                rates[engine] = (end, steady)
                peak = ", ".join(f"{uss / 2**20:.0f} / {rss / 2**20:.0f}" for uss, rss in results[-1]["peaks"])
                peak += " per actor" if engine == "ray" else " (the process)"
                print(f"| {model} | {engine} | {end:.2f} | {steady:.2f} | {peak} |")
            print(f"| {model} | ray ÷ local | {rates['ray'][0] / rates['local'][0]:.2f} | "
                  f"{rates['ray'][1] / rates['local'][1]:.2f} | |")


if __name__ == "__main__":
    main()

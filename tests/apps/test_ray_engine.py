"""The Ray Data engine: the same rows and pictures as the local folder job, resume after a kill, a cluster
on loopback joined with --address, and one line when Ray is missing. Ray starts once for the module (2 CPUs,
a small object store: ``ray_here`` in conftest.py); the cluster test starts and stops its own, on 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from gradcam.apps.pipeline.local import explain_folder
from gradcam.apps.synthetic.shapes import make_shapes
from gradcam.cli import main

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray[data] is not installed: pip install 'gradcam[ray]'")
BATCH = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """30 images: 28 shapes of 64 px in two folders, and two broken files."""
    root = make_shapes(tmp_path_factory.mktemp("ray") / "data", n=28, size=64, seed=3)
    (root / "circle" / "broken.png").write_bytes(b"not a picture")
    (root / "square" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


@pytest.fixture(scope="module")
def local_rows(data, tmp_path_factory) -> tuple[Path, dict]:
    """The local folder job on the same images: the reference rows, by path."""
    out = tmp_path_factory.mktemp("local") / "out"
    summary = explain_folder([data], out, batch_size=BATCH, progress_bar=False)
    assert (summary.total, summary.done, summary.failed) == (30, 28, 2)
    return out, by_path(out)


def by_path(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    found = {row["path"]: row for row in rows}
    assert len(found) == len(rows), "one image, one row"
    return found


def same_rows(ray_rows: dict, local: tuple[Path, dict], ray_out: Path, settings: bool = True) -> None:
    """Row for row the local job's (``settings``: the same settings key too; the command's differs from the
    Python call's, which passes no method options)."""
    local_out, rows = local
    assert set(ray_rows) == set(rows)
    assert len({row["settings"] for row in ray_rows.values()}) == 1
    for path, row in rows.items():
        got = ray_rows[path]
        assert set(got) == set(row), path
        for key in set(row) - {"probability", "top5", "files"} - (set() if settings else {"settings"}):
            assert got[key] == row[key], (path, key)
        if row["status"] == "ok":
            assert got["probability"] == pytest.approx(row["probability"], abs=1e-5)
            assert [t[0] for t in got["top5"]] == [t[0] for t in row["top5"]]
            mine, theirs = Path(got["files"]["overlay"]), Path(row["files"]["overlay"])
            assert mine.relative_to(ray_out) == theirs.relative_to(local_out)
            with Image.open(mine) as a, Image.open(theirs) as b:
                assert a.size == b.size == Image.open(path).size


def pictures_whole(out: Path) -> list[Path]:
    """Every picture under its own name opens and decodes to the end (a half-written file would not)."""
    found = sorted(p for p in out.rglob("*.png") if not p.name.startswith("."))
    for picture in found:
        with Image.open(picture) as image:
            image.load()
    return found


@needs_ray
def test_the_same_rows_and_pictures_as_the_local_job(ray_here, data, local_rows, tmp_path):
    import pyarrow.parquet as pq

    from gradcam.apps.pipeline.job import plan_job

    out = tmp_path / "out"
    errors = []
    summary = plan_job([str(data)]).run(out, engine="ray", batch_size=BATCH, progress_bar=False,
                                        on_error=lambda message, detail: errors.append(message))
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (30, 28, 2, 0)
    assert sorted(errors) == sorted(r["error"] for r in local_rows[1].values() if r["status"] == "error")
    rows = by_path(out)
    same_rows(rows, local_rows, out)
    assert len(pictures_whole(out)) == 28
    table = pq.read_table(out / "manifest.parquet").to_pylist()
    assert {r["path"]: (r["status"], r["class_index"]) for r in table} == {
        p: (r["status"], r.get("class_index")) for p, r in rows.items()}
    assert (out / "manifest.csv").read_text().count("\n") == 31


@needs_ray
def test_a_killed_job_resumes_without_redoing_what_was_finished(ray_here, ray_env, data, local_rows, tmp_path,
                                                                     capsys):
    """The command on the module's Ray (``--address``), killed after a few rows; the rerun skips them, leaves
    their pictures untouched, and every picture is whole."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradcam.cli", "explain", str(data), "--engine", "ray", "--address", ray_here,
               "--out", str(out), "--batch-size", "1", "--quiet"]
    job = subprocess.Popen(command, env={**os.environ, **ray_env}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    manifest, deadline = out / "manifest.jsonl", time.monotonic() + 90
    try:
        while time.monotonic() < deadline and job.poll() is None:
            if manifest.exists() and manifest.read_text().count('"status": "ok"') >= 4:
                break
            time.sleep(0.02)
    finally:
        job.kill()  # SIGKILL: no cleanup of its own
        job.wait(30)
    assert job.returncode == -signal.SIGKILL, job.stderr.read().decode()[-2000:]
    before = {}
    for line in manifest.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill is not a finished row
            continue
        if row["status"] == "ok":
            before[row["path"]] = Path(row["files"]["overlay"]).stat()
    assert 4 <= len(before) < 28, "the job should be killed midway"
    pictures_whole(out)
    time.sleep(0.05)  # a rewritten file would get a later time

    capsys.readouterr()
    assert main(command[3:-3] + ["--batch-size", str(BATCH), "--resume", "--quiet"]) == 1  # two images failed
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"30 images: {28 - len(before)} explained, 2 failed, {len(before)} already done ("), last
    rows = by_path(out)
    same_rows(rows, local_rows, out, settings=False)
    for path, stat in before.items():
        now = Path(rows[path]["files"]["overlay"]).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), f"{path} was redone"
    assert len(pictures_whole(out)) == 28


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
def test_a_cluster_on_loopback_joined_with_address(ray_env, data, local_rows, tmp_path):
    """`ray start --head` on 127.0.0.1 (1 CPU) in a folder of its own, the command with --address from another
    folder, with paths relative to it (a CSV list of paths, one missing; a weights file): the actors
    read the weights the command meant. The cluster is stopped by the process that started it (not `ray stop`,
    which would stop every Ray on this machine, the module's too)."""
    import torch

    from gradcam.models.sources.bundled import lite0_state_dict

    listed = sorted(str(p) for p in (data / "circle").glob("000*.png"))[:5] + [str(data / "missing.png")]
    (tmp_path / "paths.csv").write_text("path\n" + "\n".join(listed) + "\n")
    torch.save(lite0_state_dict(), tmp_path / "lite0.pth")  # the bundled weights, under a relative path
    port, env = free_port(), {**os.environ, **ray_env}
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "1",
                             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp, "--block"],
                            env=env, cwd=temp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert head.poll() is None and time.monotonic() < deadline, f"ray start failed: {head.stdout.read()}"
            time.sleep(0.2)
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "gradcam.cli", "explain", "paths.csv", "--weights", "lite0.pth",
                               "--engine", "ray", "--address", f"127.0.0.1:{port}", "--out", str(out), "--batch-size",
                               "2", "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150)
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(10)
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 1, done.stderr[-3000:]  # one image failed
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("6 images: 5 explained, 1 failed (") and "images/s" in last, last
    rows = by_path(out)
    assert rows[str(data / "missing.png")]["error"] == f"{data / 'missing.png'}: file not found"
    same_rows({p: r for p, r in rows.items() if r["status"] == "ok"},
              (local_rows[0], {p: local_rows[1][p] for p in listed[:5]}), out, settings=False)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_without_ray_the_engine_says_what_to_install(tmp_path, data):
    """Ray made unimportable: one line and exit 2 for each command that takes --engine ray, before any model
    loads; and --address without it is a usage error too."""
    commands = [["explain", str(data)], ["evaluate", str(data)], ["audit", str(data)]]
    runs = [[*c, "--engine", "ray", "--out", str(tmp_path)] for c in commands] + [
        ["evaluate", str(data), "--address", "127.0.0.1:1", "--out", str(tmp_path)]]
    code = ("import sys; sys.modules['ray'] = None; from gradcam.cli import main; "
            f"print([main(argv) for argv in {runs!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[2, 2, 2, 2]", done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4
    hint = "error: --engine ray needs Ray Data: pip install 'gradcam[ray]' ("
    assert all(line.startswith(hint) for line in lines[:3]), lines
    assert lines[3] == "error: --address is the Ray cluster's: give it with --engine ray"


def test_the_decoding_task_imports_no_torch_and_gives_the_models_inputs(data):
    """A Ray Data decode task unpickles the job's preprocessing and decodes in a process that never imports torch
    (so a decode worker starts in about a second); its inputs are the bundled model's, to the last bit."""
    import pickle

    import numpy as np

    from gradcam.models.sources.bundled import PREPROCESS

    paths = [str(p) for p in sorted(data.rglob("*.png"))[:3]] + [str(data / "square" / "cut.jpg")]
    child = (
        "import pickle, sys\n"
        "from gradcam.apps.pipeline.decode import decode\n"
        "preprocess, paths = pickle.loads(sys.stdin.buffer.read())\n"
        "out = decode({'path': paths, 'source': paths, 'name': paths}, preprocess)\n"
        "assert 'torch' not in sys.modules, 'the decoding task imported torch'\n"
        "sys.stdout.buffer.write(pickle.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", child], input=pickle.dumps((PREPROCESS, paths)),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = pickle.loads(done.stdout)
    assert list(out["error"][:3]) == ["", "", ""] and "cut.jpg" in out["error"][3]
    for j, path in enumerate(paths[:3]):
        with Image.open(path) as image:
            want = PREPROCESS(image.convert("RGB")).numpy()
        assert np.array_equal(out["x"][j], want)
        assert (int(out["height"][j]), int(out["width"][j])) == (image.height, image.width)


def test_a_preprocessing_of_ones_own_is_called_as_the_local_job_calls_it(data):
    """A Preprocess subclass with its own __call__ (a mirrored input, say) is what the decoding task applies, not
    the base class's numpy numbers; so is a plain callable."""
    import numpy as np

    from gradcam.apps.pipeline.decode import model_input
    from gradcam.models.preprocess import Preprocess

    class Mirrored(Preprocess):
        def __call__(self, image):
            return super().__call__(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))

    with Image.open(sorted(data.rglob("*.png"))[0]) as image:
        image = image.convert("RGB")
    mirrored = Mirrored(size=32)
    assert np.array_equal(model_input(mirrored, image), mirrored(image).numpy())
    assert not np.array_equal(model_input(mirrored, image), Preprocess(size=32).array(image))
    assert np.array_equal(model_input(lambda im: mirrored(im) * 2, image), mirrored(image).numpy() * 2)


def test_the_pool_and_its_batches_follow_the_clusters_hardware():
    """One actor per GPU with 64-image batches, its CPU threads drawing, where the cluster has GPUs (and the job
    is not told the CPU), else one per 4 CPUs with 16-image batches; the CPUs shared among the actors, room left
    for decoding."""
    from gradcam.apps.device import batch_size_for
    from gradcam.apps.pipeline.ray_engine import actor_pool

    class Cluster:
        def __init__(self, **resources):
            self.resources = resources

        def cluster_resources(self):
            return self.resources

    gpus = actor_pool(Cluster(CPU=32, GPU=2), None, None, None)
    assert (gpus.size, gpus.gpus, gpus.device, gpus.threads, batch_size_for(gpus.device)) == (2, 2, "cuda", 16, 64)
    assert gpus.writers == 16  # a GPU actor's CPU threads draw the pictures
    told_cpu = actor_pool(Cluster(CPU=32, GPU=2), "cpu", None, None)
    assert (told_cpu.size, told_cpu.gpus, told_cpu.device, batch_size_for(told_cpu.device)) == (8, 0, "cpu", 16)
    small = actor_pool(Cluster(CPU=2), None, None, None)
    assert (small.size, small.threads, small.cpus, small.gpus, batch_size_for(small.device)) == (1, 2, 1.0, 0, 16)
    assert small.writers == told_cpu.writers == 2  # the model's threads take a CPU actor's cores
    assert actor_pool(Cluster(CPU=1), None, None, None).cpus == 0.5  # half a CPU left to the decode tasks


@needs_ray
def test_the_explain_actors_take_two_calls_at_once_in_threads_and_other_steps_one():
    """Ray Data runs a class's calls one at a time unless asked for true threads: the explain pool asks for two
    calls per actor in threads (its step serialises the model half), an analysis's pool (no lock) for neither."""
    import ray

    from gradcam.apps.pipeline.ray_engine import CALLS_PER_ACTOR, Pool

    pool = Pool(size=1, threads=2, cpus=1.0, gpus=0, device=None)
    explain, other = pool.options(ray, overlapping=True)["compute"], pool.options(ray)["compute"]
    assert (explain.max_concurrent_calls_per_actor, explain.enable_true_multi_threading) == (CALLS_PER_ACTOR, True)
    assert CALLS_PER_ACTOR == 2 and explain.max_tasks_in_flight_per_actor == 3
    assert not other.enable_true_multi_threading and other.max_concurrent_calls_per_actor in (None, 1)

"""Folders at scale: background decoding, manifest rows, a corrupt file among good ones, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TwoStageCNN, spread_init
from PIL import Image

import gradcam
from gradcam.apps.pipeline.local import explain_folder, find_images, input_roots
from gradcam.apps.pipeline.step import ExplainStep
from gradcam.cli import main
from gradcam.io.images import load_image
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.render.files import MemorySink, mirrored_names

FIELDS = {"path", "status", "error", "model", "method", "layer", "rank", "class_index", "label", "probability",
          "top5", "files", "settings"}


@pytest.fixture(scope="module")
def tiny_bundle() -> ModelBundle:
    torch.manual_seed(0)
    model = spread_init(TwoStageCNN(classes=4), 0)
    return ModelBundle(model, Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), ["ant", "bee", "cat", "dog"],
                       "two-stage")


@pytest.fixture
def folder(tmp_path):
    """Nine small photo-like images of mixed sizes in two folders, and one corrupt file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for i in range(9):
        size = (40 + 7 * i, 30 + 5 * i)
        array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        where = root / "sub" if i % 3 == 0 else root
        Image.fromarray(array).save(where / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def rows(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_find_images_walks_folders_and_globs(folder):
    found = find_images([folder])
    assert len(found) == 10 and not any(p.endswith(".txt") for p in found)
    assert find_images([str(folder / "*.png")]) == sorted(str(p) for p in folder.glob("*.png"))
    assert find_images([folder / "img1.png", folder / "img1.png"]) == [str(folder / "img1.png")]


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_job_with_a_corrupt_file(tmp_path, folder, tiny_bundle, workers):
    out = tmp_path / "out"
    errors = []
    summary = explain_folder([folder], out, model=tiny_bundle, layer="features", batch_size=4, workers=workers,
                             on_error=lambda message, detail: errors.append(message))
    assert (summary.total, summary.done, summary.failed) == (10, 9, 1)
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    found = rows(out)
    assert len(found) == 10 and all(set(r) == FIELDS or r["status"] == "error" for r in found)
    bad = [r for r in found if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.jpg") and "broken.jpg" in bad[0]["error"]
    good = [r for r in found if r["status"] == "ok"]
    for r in good:
        assert r["model"] == "two-stage" and r["method"] == "gradcam" and r["layer"] == "features"
        assert r["label"] == ["ant", "bee", "cat", "dog"][r["class_index"]]
        assert [t[0] for t in r["top5"]][0] == r["class_index"] and len(r["top5"]) == 4
        assert r["probability"] == pytest.approx(r["top5"][0][2], abs=1e-6)
        overlay = r["files"]["overlay"]
        assert set(r["files"]) == {"overlay"}
        with Image.open(overlay) as im, Image.open(r["path"]) as original:
            assert im.size == original.size
    with open(out / "manifest.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 10 and {row["status"] for row in table} == {"ok", "error"}


def test_workers_give_the_same_maps(tmp_path, folder, tiny_bundle):
    a = explain_folder([folder], tmp_path / "a", model=tiny_bundle, layer="features", save=(), save_maps=True)
    b = explain_folder([folder], tmp_path / "b", model=tiny_bundle, layer="features", save=(), save_maps=True,
                       workers=2, batch_size=3)
    assert a.done == b.done == 9
    maps_a = sorted((tmp_path / "a").rglob("*.raw.npy"))
    assert len(maps_a) == 9
    for path in maps_a:
        np.testing.assert_allclose(np.load(path), np.load(tmp_path / "b" / path.relative_to(tmp_path / "a")),
                                   atol=1e-6)


def test_resume_writes_nothing_twice_and_loses_nothing(tmp_path, folder, tiny_bundle, monkeypatch):
    out = tmp_path / "out"
    from gradcam.apps.pipeline import step as step_module

    real_save, calls = step_module._save, []

    def dying_save(result, *args):  # the job is killed while writing the 5th image
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(result.name)
        return real_save(result, *args)

    monkeypatch.setattr(step_module, "_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        explain_folder([folder], out, model=tiny_bundle, layer="features", batch_size=2)
    first = [r["path"] for r in rows(out) if r["status"] == "ok"]
    assert len(first) == 4
    assert not list(out.glob(".*.tmp"))  # no half-written file

    monkeypatch.setattr(step_module, "_save", lambda result, *args: (calls.append(result.name),
                                                                         real_save(result, *args))[1])
    summary = explain_folder([folder], out, model=tiny_bundle, layer="features", batch_size=2, resume=True)
    assert (summary.skipped, summary.done, summary.failed) == (4, 5, 1)
    assert len(calls) == 9 == len(set(calls))  # every good image written once over both runs
    ok = [r["path"] for r in rows(out) if r["status"] == "ok"]
    assert len(ok) == 9 == len(set(ok))
    # other settings: an error that says so, not a manifest of two kinds of rows
    with pytest.raises(gradcam.OptionError, match="other settings"):
        explain_folder([folder], out, model=tiny_bundle, layer="features", resume=True, normalize="max")
    again = explain_folder([folder], out, model=tiny_bundle, layer="features", normalize="max")  # a new job
    assert again.skipped == 0 and again.done == 9 and len(rows(out)) == 10


def test_save_choices_and_bad_options(tmp_path, folder, tiny_bundle):
    out = tmp_path / "out"
    explain_folder([folder / "img1.png"], out, model=tiny_bundle, layer="features",
                   save=("overlay", "heatmap", "grayscale", "figure"), save_maps=True)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("manifest"))
    assert names == [f"img1.png.gradcam.{kind}" for kind in ("figure.png", "grayscale.png", "heatmap.png",
                                                             "overlay.png", "raw.npy")]
    assert np.load(out / "img1.png.gradcam.raw.npy").shape == (16, 16)  # the layer's resolution for a 32² input
    with pytest.raises(gradcam.OptionError, match="poster"):
        explain_folder([folder], out, model=tiny_bundle, save=("poster",))
    with pytest.raises(gradcam.OptionError, match="max_channels"):
        explain_folder([folder], out, model=tiny_bundle, max_channels=3)


def test_cli_folder_defaults_to_overlays_and_a_manifest(tmp_path, capsys):
    pytest.importorskip("skimage")
    import skimage.data

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage.data.chelsea()).save(folder / "cat.jpg")
    Image.fromarray(skimage.data.coffee()).save(folder / "cup.jpg")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "out"
    status = main(["explain", str(folder), "--out", str(out), "--workers", "1", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""  # --quiet
    assert "bad.png" in captured.err and "3 images: 2 explained, 1 failed" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["cat.jpg.gradcam.overlay.png", "cup.jpg.gradcam.overlay.png",
                                                     "manifest.csv", "manifest.jsonl", "manifest.settings.json"]
    status = main(["explain", str(folder), "--out", str(out), "--resume", "--quiet"])
    assert status == 1 and "2 already done" in capsys.readouterr().err


def _image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 20, 3), value, np.uint8)).save(path)


def test_output_names_mirror_the_inputs_and_resume_never_overwrites(tmp_path, tiny_bundle):
    """class_a/0001.jpg and class_b/0001.jpg, cat.jpg with xgradcam and cat_xgradcam.jpg with gradcam:
    every picture has its own file; files added before --resume get new names, never a done one's."""
    root, out = tmp_path / "val", tmp_path / "out"
    _image(root / "class_a" / "0001.png", 40)
    _image(root / "cat.png", 90)
    _image(root / "cat_xgradcam.png", 140)
    explain_folder([root], out, model=tiny_bundle, layer="features", method=["gradcam", "xgradcam"])
    before = {p: p.read_bytes() for p in out.rglob("*.overlay.png")}
    assert len(before) == 6
    assert (out / "class_a" / "0001.png.gradcam.overlay.png") in before
    assert (out / "cat.png.xgradcam.overlay.png") in before and (out / "cat_xgradcam.png.gradcam.overlay.png") in before
    _image(root / "class_b" / "0001.png", 200)  # new files that the old -2 suffixes would have shifted
    _image(root / "0001.png", 250)
    summary = explain_folder([root], out, model=tiny_bundle, layer="features", method=["gradcam", "xgradcam"],
                             resume=True)
    assert (summary.skipped, summary.done) == (3, 2)
    assert all(path.read_bytes() == data for path, data in before.items())  # finished work untouched
    assert len(list(out.rglob("*.overlay.png"))) == 10
    recorded = {r["files"]["overlay"] for r in rows(out)}
    assert len(recorded) == 10 and str(out / "class_b" / "0001.png.gradcam.overlay.png") in recorded


def test_resume_knows_the_weights(tmp_path, tiny_bundle):
    """Retrained weights under the same name are not taken for the old ones' finished work."""
    import copy

    root, out = tmp_path / "in", tmp_path / "out"
    _image(root / "a.png", 60)
    explain_folder([root], out, model=tiny_bundle, layer="features")
    assert explain_folder([root], out, model=tiny_bundle, layer="features", resume=True).skipped == 1
    retrained = copy.deepcopy(tiny_bundle)
    with torch.no_grad():
        retrained.module.fc.weight.add_(0.01)
    with pytest.raises(gradcam.OptionError, match="other settings"):
        explain_folder([root], out, model=retrained, layer="features", resume=True)


def test_a_method_failing_on_one_image_costs_only_that_row(tmp_path, tiny_bundle, monkeypatch):
    """xgradcam fails on the white image: that image gets an error row for xgradcam and its gradcam
    pictures; every other image gets both methods; the job goes on and counts one failed image. The two
    methods share one pass: when it fails, each runs alone and says which one failed."""
    from gradcam.apps.explainer import Explainer
    from gradcam.apps.pipeline import step as step_module
    from gradcam.errors import ModelError

    real_run = Explainer.run

    def run(self, x, target=None, *, top_k=None):
        if self.method == "xgradcam" and (x.flatten(1).amin(1) > 1.9).any():
            raise ModelError("activations are NaN")
        return real_run(self, x, target, top_k=top_k)

    def together(methods, x, *args, **kwargs):  # the shared pass fails too: each method runs alone
        if (x.flatten(1).amin(1) > 1.9).any():
            raise ModelError("activations are NaN")
        return real_together(methods, x, *args, **kwargs)

    real_together = step_module.explain_together
    monkeypatch.setattr(Explainer, "run", run)
    monkeypatch.setattr(step_module, "explain_together", together)
    root, out = tmp_path / "in", tmp_path / "out"
    for i, value in enumerate([30, 255, 80, 120]):
        _image(root / f"{i}.png", value)
    summary = explain_folder([root], out, model=tiny_bundle, layer="features", method=["gradcam", "xgradcam"],
                             batch_size=4)
    assert (summary.done, summary.failed) == (3, 1)
    found = {(r["path"].rsplit("/", 1)[-1], r["method"]): r["status"] for r in rows(out)}
    assert found == {(f"{i}.png", m): ("error" if (i, m) == (1, "xgradcam") else "ok")
                     for i in range(4) for m in ("gradcam", "xgradcam")}
    assert "activations are NaN" in summary.errors[0] and "1.png" in summary.errors[0]
    assert (out / "1.png.gradcam.overlay.png").exists() and not (out / "1.png.xgradcam.overlay.png").exists()


def test_maps_reach_full_size_one_image_at_a_time(tmp_path, tiny_bundle, monkeypatch):
    """A batch's maps stay at the layer's resolution; an image is drawn and written whole by one of the
    writer threads, so at most WRITERS images are at full size at once (memory per image, not per batch)."""
    from gradcam.apps.explainer import Explainer
    from gradcam.apps.pipeline import local as folder_module

    events = []
    from gradcam.apps.pipeline import step as step_module

    real_explanation, real_save = Explainer.explanation, step_module._save
    monkeypatch.setattr(Explainer, "explanation", lambda self, out, index, rank, picture, name: (
        events.append(("draw", name)), real_explanation(self, out, index, rank, picture, name))[1])
    monkeypatch.setattr(step_module, "_save", lambda result, *args: (
        events.append(("save", result.name)), real_save(result, *args))[1])
    root = tmp_path / "in"
    for i in range(4):
        _image(root / f"{i}.png", 50 * i)
    explain_folder([root], tmp_path / "out", model=tiny_bundle, layer="features", method=["gradcam", "hirescam"],
                   batch_size=4, top_k=2)
    spans = {}  # image -> (its first event, its last event)
    for i, (_, name) in enumerate(events):
        spans[name] = (spans.get(name, (i, i))[0], i)
    in_flight = max(sum(a <= i <= b for a, b in spans.values()) for i in range(len(events)))
    assert len(spans) == 4 and in_flight <= folder_module.WRITERS, events  # per writer, not per batch of 4
    assert sum(kind == "save" for kind, _ in events) == 4 * 2 * 2


@pytest.mark.parametrize("fmt, magic", [("jpg", b"\xff\xd8\xff"), ("webp", b"RIFF"), ("png", b"\x89PNG")])
def test_picture_formats(tmp_path, tiny_bundle, fmt, magic):
    root, out = tmp_path / "in", tmp_path / "out"
    _image(root / "a.png", 90)
    explain_folder([root], out, model=tiny_bundle, layer="features", format=fmt, save=("overlay", "figure"))
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("manifest"))
    assert written == [f"a.png.gradcam.figure.{fmt}", f"a.png.gradcam.overlay.{fmt}"]
    with Image.open(out / f"a.png.gradcam.overlay.{fmt}") as im:
        assert im.size == (20, 24)
    assert (out / f"a.png.gradcam.overlay.{fmt}").read_bytes().startswith(magic)
    with pytest.raises(gradcam.OptionError, match="format"):
        explain_folder([root], out, model=tiny_bundle, format="gif")


def test_the_per_batch_step_on_plain_columns_gives_the_folder_jobs_rows(tmp_path, folder, tiny_bundle):
    """The public step (what a Ray Data actor calls) on a dict of numpy arrays: the folder job's rows."""
    options = dict(model=tiny_bundle, method=["gradcam", "hirescam"], top_k=2, save=["overlay"])
    explain_folder([folder], tmp_path / "job", progress_bar=False, **options)
    files = find_images([folder])
    step = ExplainStep(tmp_path / "step", names=mirrored_names(files, input_roots([folder])), **options)
    images, errors = [], []
    for path in files:
        try:
            images.append(np.asarray(load_image(path)))
            errors.append("")
        except gradcam.GradCAMError as exc:
            images.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(exc))
    batch = {"path": np.array(files), "image": np.array(images, dtype=object), "error": np.array(errors)}
    columns = step(batch)
    assert all(isinstance(values, list) for values in columns.values())
    got = sorted((dict(zip(columns, values)) for values in zip(*columns.values())), key=_row_key)
    want = sorted(rows(tmp_path / "job"), key=_row_key)
    assert len(got) == len(want) == 9 * 2 * 2 + 1  # nine images × two methods × two ranks, one broken file
    for mine, theirs in zip(got, want):
        same = ("path", "status", "model", "method", "layer", "rank", "class_index", "label", "settings")
        assert {k: mine.get(k) for k in same} == {k: theirs.get(k) for k in same}
        assert mine.get("probability") == pytest.approx(theirs.get("probability"), abs=1e-5)
        if mine["status"] == "ok":
            ours, job = Image.open(mine["files"]["overlay"]), Image.open(theirs["files"]["overlay"])
            assert ours.size == job.size == Image.open(mine["path"]).size
    # the preprocessed inputs given as a column give the same rows
    good = [j for j, error in enumerate(errors) if not error]
    given = {"path": batch["path"][good], "image": batch["image"][good],
             "x": np.stack([tiny_bundle.preprocess(Image.fromarray(images[j])).numpy() for j in good])}
    again = ExplainStep(tmp_path / "again", names=step.names, **options)(given)
    assert again["class_index"] == [r["class_index"] for r in sorted(
        (dict(zip(columns, v)) for v in zip(*columns.values()) if v[1] == "ok"), key=lambda r: files.index(r["path"]))]



def test_the_step_called_from_two_threads_runs_one_batch_in_the_model_at_a_time(folder, tiny_bundle):
    """How a Ray actor overlaps a batch's drawing with the next batch's model: two threads call the step at once;
    the model half never runs twice at once, each batch gets the rows it gets alone, named by its "name"."""
    import threading
    import time

    files = [f for f in find_images([folder]) if not f.endswith("broken.jpg")][:4]
    batches = [{"path": files[i:i + 2], "name": [f"b{i}/{Path(f).name}" for f in files[i:i + 2]],
                "image": [np.asarray(load_image(f)) for f in files[i:i + 2]]} for i in (0, 2)]
    alone = [ExplainStep(MemorySink(), model=tiny_bundle)(batch) for batch in batches]
    step = ExplainStep(MemorySink(), model=tiny_bundle)
    inside, most, explain = [0], [0], step.explain

    def slow_explain(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.2)  # long enough for the other thread to arrive
        try:
            return explain(*args, **kwargs)
        finally:
            inside[0] -= 1

    step.explain = slow_explain
    got = [None, None]
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, step(batches[i]))) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    for mine, theirs, batch in zip(got, alone, batches):
        assert mine["class_index"] == theirs["class_index"] and mine["path"] == batch["path"]
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
        assert [f["overlay"] for f in mine["files"]] == [f"{n}.gradcam.overlay.png" for n in batch["name"]]
    assert len(step.sink.items) == 4


def test_the_step_into_a_memory_sink_writes_nothing_and_gives_the_same_pictures(tmp_path, folder, tiny_bundle):
    """The web app's way: the step's pictures kept in memory by their file names, the same pixels as the files."""
    options = dict(model=tiny_bundle, method=["gradcam", "hirescam"], save=["overlay", "grayscale"], save_maps=True)
    files = [f for f in find_images([folder]) if not f.endswith("broken.jpg")][:3]
    on_disk = ExplainStep(tmp_path / "disk", **options)
    in_memory = ExplainStep(MemorySink(), **options)
    batch = {"path": np.array(files), "image": np.array([np.asarray(load_image(f)) for f in files], dtype=object)}
    rows, kept = on_disk(batch), in_memory(batch)
    assert kept["class_index"] == rows["class_index"] and kept["label"] == rows["label"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "in"]  # the memory sink wrote no file
    assert len(in_memory.sink.items) == 3 * 2 * 3 + 3  # 3 images x 2 methods x (2 pictures + map), 3 figures
    for mine, theirs in zip(kept["files"], rows["files"]):
        assert set(mine) == set(theirs) == {"overlay", "grayscale", "maps"} | ({"methods"} if "methods" in mine
                                                                             else set())
        for kind in ("overlay", "grayscale"):
            assert Path(theirs[kind]).name == mine[kind]
            with Image.open(theirs[kind]) as image:
                assert np.array_equal(np.asarray(image), np.asarray(in_memory.sink.items[mine[kind]]))
        assert np.array_equal(np.load(theirs["maps"]), in_memory.sink.items[mine["maps"]])

def _row_key(row: dict) -> tuple:
    return row["path"], row["method"], row.get("rank") or 0

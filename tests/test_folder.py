"""Folders at scale: background decoding, manifest rows, a corrupt file among good ones, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import gradcam
from gradcam.cli import main
from gradcam.folder import explain_folder, find_images
from gradcam.models import ModelBundle
from gradcam.preprocess import Preprocess

from conftest import TwoStageCNN, spread_init

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
    maps_a = sorted((tmp_path / "a").glob("*_raw.npy"))
    assert len(maps_a) == 9
    for path in maps_a:
        np.testing.assert_allclose(np.load(path), np.load(tmp_path / "b" / path.name), atol=1e-6)


def test_resume_writes_nothing_twice_and_loses_nothing(tmp_path, folder, tiny_bundle, monkeypatch):
    out = tmp_path / "out"
    from gradcam import folder as folder_module

    real_save, calls = folder_module._save, []

    def dying_save(result, *args):  # the job is killed while writing the 5th image
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(result.stem)
        return real_save(result, *args)

    monkeypatch.setattr(folder_module, "_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        explain_folder([folder], out, model=tiny_bundle, layer="features", batch_size=2)
    first = [r["path"] for r in rows(out) if r["status"] == "ok"]
    assert len(first) == 4
    assert not list(out.glob(".*.tmp"))  # no half-written file

    monkeypatch.setattr(folder_module, "_save", lambda result, *args: (calls.append(result.stem),
                                                                         real_save(result, *args))[1])
    summary = explain_folder([folder], out, model=tiny_bundle, layer="features", batch_size=2, resume=True)
    assert (summary.skipped, summary.done, summary.failed) == (4, 5, 1)
    assert len(calls) == 9 == len(set(calls))  # every good image written once over both runs
    ok = [r["path"] for r in rows(out) if r["status"] == "ok"]
    assert len(ok) == 9 == len(set(ok))
    # other settings: nothing is skipped
    again = explain_folder([folder], out, model=tiny_bundle, layer="features", resume=True, normalize="max")
    assert again.skipped == 0 and again.done == 9


def test_save_choices_and_bad_options(tmp_path, folder, tiny_bundle):
    out = tmp_path / "out"
    explain_folder([folder / "img1.png"], out, model=tiny_bundle, layer="features",
                   save=("overlay", "heatmap", "grayscale", "figure"), save_maps=True)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("manifest"))
    assert names == ["img1_gradcam.png", "img1_grayscale.png", "img1_heatmap.png", "img1_overlay.png", "img1_raw.npy"]
    assert np.load(out / "img1_raw.npy").shape == (16, 16)  # the layer's resolution for a 32² input
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
    assert sorted(p.name for p in out.iterdir()) == ["cat_overlay.png", "cup_overlay.png", "manifest.csv",
                                                     "manifest.jsonl"]
    status = main(["explain", str(folder), "--out", str(out), "--resume", "--quiet"])
    assert status == 1 and "2 already done" in capsys.readouterr().err


def test_output_names_never_collide():
    from gradcam.folder import unique_stems

    stems = unique_stems(["a/cat.jpg", "b/cat.png", "c/cat-2.jpg", "d/Cat.jpg"])
    assert len({s.casefold() for s in stems.values()}) == 4
    assert stems["a/cat.jpg"] == "cat"

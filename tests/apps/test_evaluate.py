"""`gradcam evaluate`: each method's faithfulness on a model's images, against random maps."""

from __future__ import annotations

import csv

import pytest
import torch

import gradcam
from gradcam.apps.analyses.evaluate import RANDOM, evaluate
from gradcam.cli import main

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        Image.fromarray(getattr(skdata, name)()).save(folder / f"{name}.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def test_rows_are_the_metrics_of_the_methods_maps(photos):
    files = [photos / "chelsea.jpg", photos / "coffee.jpg", photos / "broken.jpg"]
    result = evaluate(files, methods=["gradcam", "guided-backprop"], steps=5)
    assert result.methods == ["gradcam"]
    assert [m for m, _ in result.skipped] == ["guided-backprop"]
    assert [str(f) for f, _ in result.failed] == [str(files[2])]
    assert [(r["image"], r["method"]) for r in result.rows] == [
        ("chelsea.jpg", "gradcam"), ("coffee.jpg", "gradcam"), ("chelsea.jpg", RANDOM), ("coffee.jpg", RANDOM)]
    # the gradcam rows are the metrics of gradcam's own maps
    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([gradcam.load_image(f) for f in files[:2]])
    out = gradcam.GradCAM(bundle)(x)
    areas = gradcam.DeletionInsertion(bundle.module, steps=5)(x, out.maps, out.targets)
    for i in range(2):
        assert result.rows[i]["class_index"] == int(out.targets[i])
        assert result.rows[i]["deletion_auc"] == pytest.approx(float(areas.deletion_auc[i]), abs=1e-5)
        assert result.rows[i]["insertion_auc"] == pytest.approx(float(areas.insertion_auc[i]), abs=1e-5)
    # trained and real: Grad-CAM's maps put the class back faster than random maps on the same grid
    assert all(result.rows[i]["insertion_auc"] > result.rows[i + 2]["insertion_auc"] for i in range(2))
    summary = {s["method"]: s for s in result.summary()}
    assert summary["gradcam"]["images"] == 2
    assert summary["gradcam"]["insertion_auc"] == pytest.approx(
        sum(r["insertion_auc"] for r in result.rows[:2]) / 2)
    assert "gradcam" in result.table() and RANDOM in result.table()


def test_the_command(photos, tmp_path, capsys):
    status = main(["evaluate", str(photos), "--methods", "gradcam,layercam", "--steps", "4", "--out", str(tmp_path)])
    assert status == 1  # the broken image was reported, the others evaluated
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "layercam" in captured.out and "random" in captured.out
    with open(tmp_path / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["method"] for r in rows} == {"gradcam", "layercam", RANDOM}
    assert all(0.0 <= float(r["deletion_auc"]) <= 1.0 for r in rows)
    assert main(["evaluate", str(photos / "chelsea.jpg"), "--methods", "gradcam,nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_seeded_random_maps_are_the_same_each_run(photos):
    one = evaluate([photos / "chelsea.jpg"], steps=3)
    two = evaluate([photos / "chelsea.jpg"], steps=3)
    assert [r for r in one.rows if r["method"] == RANDOM] == [r for r in two.rows if r["method"] == RANDOM]
    assert torch.isfinite(torch.tensor([r["deletion_auc"] for r in one.rows])).all()

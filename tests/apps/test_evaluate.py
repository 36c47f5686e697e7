"""`gradcam evaluate`: each method's faithfulness on a model's images, against random maps."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
import torch
from PIL import Image
from reportcheck import Page

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
    assert f"summary: {tmp_path / 'summary.json'}" in captured.out
    assert f"report: {tmp_path / 'report.html'}" in captured.out
    # summary.json: per method, the means of the rows
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == "efficientnet_lite0" and summary["metrics"] == ["deletion", "confidence"]
    assert [f["image"].endswith("broken.jpg") for f in summary["failed"]] == [True] and summary["skipped"] == []
    assert list(summary["methods"]) == ["gradcam", "layercam", RANDOM]
    for method, means in summary["methods"].items():
        mine = [r for r in rows if r["method"] == method]
        assert means["images"] == len(mine) == 2
        for column in ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"):
            assert means[column] == pytest.approx(sum(float(r[column]) for r in mine) / 2, rel=1e-12, abs=1e-15)
    # report.html: one self-contained page with the ranking, both mean curves and the example maps
    page = Page((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert page.links() and all(link.startswith("data:image/png;base64,") or link[1:] in page.ids
                                for link in page.links())
    assert not {"script", "link"} & {tag for tag, _ in page.tags}
    assert "deletion curve" in page.headings and "insertion curve" in page.headings
    assert [h for h in page.headings if h.startswith("Maps of")] == ["Maps of chelsea.jpg", "Maps of coffee.jpg"]
    assert "random" in page.captions[0] and "ranked by deletion (lower is better)" in page.captions[0]
    assert [c.split(":")[0] for c in page.figures] == ["image", "gradcam", "layercam", RANDOM] * 2
    pictures = [Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) for src in page.images]
    assert [p.size for p in pictures[:2]] == [(700, 400)] * 2  # the two charts
    assert {p.size for p in pictures[2:]} == {(256, 170), (256, 171)}  # chelsea 451×300, coffee 600×400
    assert main(["evaluate", str(photos / "chelsea.jpg"), "--methods", "gradcam,nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_the_curves_are_the_mean_curves_of_the_images():
    from gradcam.apps.analyses.evaluate import Evaluation

    result = Evaluation("m", ["a"])
    x = torch.tensor([0.0, 0.5, 1.0])
    result.add_curves("a", {"deletion": (x, torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2]]))})
    result.add_curves("a", {"deletion": (x, torch.tensor([[1.0, 0.3, 0.1]]))})
    result.add_curves("a", {"odd": (x, torch.ones(1, 3))})
    result.add_curves("a", {"odd": (torch.tensor([0.0, 1.0]), torch.ones(1, 2))})  # x changed: no mean
    assert list(result.curves) == ["deletion"]
    xs, mean = result.curves["deletion"]["a"]
    assert xs == [0.0, 0.5, 1.0] and mean == pytest.approx([1.0, 0.5, 0.1])


def test_the_report_ranks_the_methods_by_the_first_column():
    from gradcam.apps.analyses.evaluate import Evaluation

    rows = [{"image": "x.jpg", "method": m, "class_index": 0, "label": "c", "deletion_auc": d, "insertion_auc": i}
            for m, d, i in (("a", 0.5, 0.9), ("b", 0.2, 0.1), (RANDOM, 0.4, 0.3))]
    result = Evaluation("m", ["a", "b"], rows=rows, metrics=["deletion"])
    assert [s["method"] for s in result.ranked()] == ["b", RANDOM, "a"]  # deletion: lower is better
    text = result.report().html()
    assert text.index("<td>b</td>") < text.index(f"<td>{RANDOM}</td>") < text.index("<td>a</td>")
    assert "ranked by deletion (lower is better)" in text


def test_seeded_random_maps_are_the_same_each_run(photos):
    one = evaluate([photos / "chelsea.jpg"], steps=3)
    two = evaluate([photos / "chelsea.jpg"], steps=3)
    assert [r for r in one.rows if r["method"] == RANDOM] == [r for r in two.rows if r["method"] == RANDOM]
    assert torch.isfinite(torch.tensor([r["deletion_auc"] for r in one.rows])).all()


def test_a_protocol_by_name_and_road_when_named(photos, tmp_path, monkeypatch):
    """``deletion:rise`` scores with the RISE paper's protocol, ``road`` adds its columns (not a default: it
    imputes 18 images per map), each with the model's own normalisation; summary.json names the protocols."""
    from gradcam.metrics.road import ROAD

    monkeypatch.setitem(ROAD.__init__.__kwdefaults__, "percentiles", (50,))  # one point: a quick test
    assert "road" not in gradcam.metrics.list_metrics("faithfulness", default=True)
    files = [photos / "chelsea.jpg"]
    result = evaluate(files, methods=["gradcam"], steps=3, metrics=["deletion:rise", "road"])
    assert result.protocols == {"deletion": "rise"}
    assert {"deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_combined"} <= set(result.rows[0])
    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([gradcam.load_image(files[0])])
    out = gradcam.GradCAM(bundle)(x)
    rise = gradcam.DeletionInsertion(bundle.module, steps=3, protocol="rise")(x, out.maps, out.targets)
    assert result.rows[0]["insertion_auc"] == pytest.approx(float(rise.insertion_auc[0]), abs=1e-5)
    road = ROAD(bundle.module, std=bundle.preprocess.std)(x, out.maps, out.targets)
    assert result.rows[0]["road_combined"] == pytest.approx(float(road.combined[0]), abs=1e-4)
    summary = json.loads(result.save(tmp_path)["summary"].read_text())
    assert summary["protocols"] == {"deletion": "rise"} and "road_combined" in summary["columns"]
    assert "ROAD MoRF" in result.curves
    with pytest.raises(gradcam.OptionError, match="one protocol"):
        evaluate(files, metrics=["confidence:rise"])
    with pytest.raises(gradcam.OptionError, match="protocol"):
        evaluate(files, metrics=["deletion:lime"])


def test_the_values_do_not_depend_on_the_batches_or_their_order(photos, two_stage, monkeypatch):
    """What lets Ray's actors score the batches: an image's random map is seeded by its name, and the driver
    puts the rows, the failures and the examples in the images' order, whatever order the batches come in."""
    import gradcam.apps.analyses.evaluate as module

    files = [photos / "coffee.jpg", photos / "broken.jpg", photos / "chelsea.jpg", photos / "coffee.jpg"]
    one = evaluate(files[:3], model=two_stage, steps=3, batch_size=3)
    batches = module.run_step
    monkeypatch.setattr(module, "run_step", lambda *args, **kwargs: reversed(list(batches(*args, **kwargs))))
    two = evaluate(files[:3], model=two_stage, steps=3, batch_size=1)
    assert [(r["image"], r["method"]) for r in two.rows] == [(r["image"], r["method"]) for r in one.rows] == [
        ("coffee.jpg", "gradcam"), ("chelsea.jpg", "gradcam"), ("coffee.jpg", RANDOM), ("chelsea.jpg", RANDOM)]
    for mine, theirs in zip(two.rows, one.rows):
        assert mine.keys() == theirs.keys() and mine["class_index"] == theirs["class_index"]
        assert [mine[c] for c in one.columns[4:]] == pytest.approx([theirs[c] for c in one.columns[4:]], rel=1e-5,
                                                                    abs=1e-6)
    assert two.failed == one.failed and [f for f, _ in one.failed] == [str(files[1])]
    assert [e.image for e in two.examples] == [e.image for e in one.examples] == ["coffee.jpg", "chelsea.jpg"]
    assert two.curves.keys() == one.curves.keys()
    for name, series in one.curves.items():
        assert two.curves[name]["gradcam"][1] == pytest.approx(series["gradcam"][1], rel=1e-5, abs=1e-6)


def test_precision_runs_the_maps_and_the_metrics(photos):
    """precision="bf16": the rows are the metrics (in bf16) of Grad-CAM's bf16 maps, not fp32's."""
    files = [photos / "chelsea.jpg"]
    low = evaluate(files, steps=4, precision="bf16", metrics=["deletion"]).rows[0]
    bundle = gradcam.load_model()
    x = bundle.preprocess.batch([gradcam.load_image(files[0])])
    out = gradcam.GradCAM(bundle, precision="bf16")(x)
    areas = gradcam.DeletionInsertion(bundle.module, steps=4, precision="bf16")(x, out.maps, out.targets)
    assert low["deletion_auc"] == pytest.approx(float(areas.deletion_auc[0]), abs=1e-5)
    assert low["insertion_auc"] == pytest.approx(float(areas.insertion_auc[0]), abs=1e-5)
    full = evaluate(files, steps=4, metrics=["deletion"]).rows[0]
    assert (full["deletion_auc"], full["insertion_auc"]) != (low["deletion_auc"], low["insertion_auc"])
    with pytest.raises(gradcam.OptionError, match="precision"):
        evaluate(files, steps=4, precision="fp8")

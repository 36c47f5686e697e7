"""``gradcam sanity``: the model-parameter randomisation of a folder, a verdict per method, sanity.csv,
summary.json and a self-contained report.html. Trained, small, real: the shapes CNN of ``gradcam train``."""

from __future__ import annotations

import csv
import json

from reportcheck import Page, assert_self_contained

from gradcam.cli import main


def test_the_command_separates_grad_cam_from_guided_backprop(trained_shapes, tmp_path, capsys):
    """Adebayo et al.'s finding on the trained shapes model: once the top layers are random, Grad-CAM's maps
    no longer rank the pixels as before, guided backpropagation's still do (they show the image's edges)."""
    model = trained_shapes(False)
    assert main(["make-shapes", str(tmp_path / "held"), "--n", "6", "--size", "64", "--seed", "5"]) == 0
    (tmp_path / "held" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    status = main(["sanity", str(tmp_path / "held"), "--model", str(model), "--methods", "gradcam,guided-backprop",
                   "--batch-size", "4", "--fail-on-flag", "--quiet", "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 3  # guided backprop is flagged, and --fail-on-flag says so
    assert "broken.png" in printed.err and "guided-backprop still rank the pixels" in printed.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["images"] == 6 and summary["depth"] == 5 and summary["flagged"] == ["guided-backprop"]
    grad_cam, guided = summary["methods"]["gradcam"], summary["methods"]["guided-backprop"]
    assert grad_cam["passes"] and grad_cam["at_depth"] < 0.3
    assert not guided["passes"] and guided["at_depth"] > 0.5
    # the curves: nine layers with parameters (four conv + batch-norm blocks, the head), a step per layer; the
    # cascade from the head down, the independent order from the input up
    cascade, alone = summary["curves"]["gradcam:top_down"], summary["curves"]["gradcam:independent"]
    assert cascade["layers"][:2] == ["classifier", "features.3.1"] and alone["layers"] == cascade["layers"][::-1]
    assert len(summary["curves"]) == 4 and cascade["mean"][4] == grad_cam["at_depth"]
    # sanity.csv: a row per method, order, step and image, whose means are the curves
    rows = list(csv.DictReader((out / "sanity.csv").open(encoding="utf-8")))
    assert len(rows) == 2 * 2 * 9 * 6
    mine = [float(r["similarity"] or 0) for r in rows
            if (r["method"], r["order"], r["step"]) == ("gradcam", "top_down", "5")]
    assert abs(sum(mine) / 6 - grad_cam["at_depth"]) < 1e-5
    # report.html: one self-contained page, the verdicts, both orders' curves, the example maps
    text = (out / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(page, text)
    assert {"Cascading randomisation", "Independent randomisation"} <= set(page.headings)
    assert [f for f in page.figures if f.startswith("top 5")] == ["top 5 layers random"] * 2
    assert len(page.pictures()) == 2 + 2 * 3  # two charts, three pictures per method
    # Grad-CAM alone passes: exit 0 even with --fail-on-flag (1 while an image cannot be read); a bad order is
    # one line
    (tmp_path / "held" / "broken.png").unlink()
    assert main(["sanity", str(tmp_path / "held"), "--model", str(model), "--methods", "gradcam", "--orders",
                 "top_down", "--fail-on-flag", "--quiet", "--out", str(tmp_path / "one")]) == 0
    assert main(["sanity", str(tmp_path / "held"), "--model", str(model), "--orders", "sideways"]) == 2
    assert "orders must be among top_down, independent, bottom_up" in capsys.readouterr().err

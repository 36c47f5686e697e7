"""The Clever-Hans demo from three commands, and the audit's masks, tolerance and no-annotation mode.
Trained, small, real: the shapes CNNs of ``gradcam train`` (``trained_shapes``)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from reportcheck import Page, assert_self_contained

import gradcam
from gradcam.apps.analyses.audit import audit_folder, likeness
from gradcam.apps.synthetic.shapes import draw_shapes
from gradcam.cli import main
from gradcam.metrics.localisation import pointing_game

HELD = ["--n", "100", "--size", "64", "--seed", "2"]


def held_audit(tmp_path, model, shortcut: bool, capsys) -> tuple[int, dict]:
    """make-shapes held/ [--shortcut] with another seed, then gradcam audit held/ --model M --boxes ..."""
    held = tmp_path / ("held-shortcut" if shortcut else "held")
    assert main(["make-shapes", str(held), *HELD, *(["--shortcut"] if shortcut else [])]) == 0
    out = tmp_path / ("out-shortcut" if shortcut else "out")
    status = main(["audit", str(held), "--model", str(model), "--boxes", str(held / "boxes.json"), "--fail-on-flag",
                   "--out", str(out)])
    capsys.readouterr()
    return status, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_the_audit_flags_the_model_that_learned_the_marker(trained_shapes, tmp_path, capsys):
    """make-shapes --shortcut, train --arch small-cnn, audit a held set: the model is right, its maps point at
    the marker; the same three commands without --shortcut give a model whose maps point at the shapes."""
    status, clever = held_audit(tmp_path, trained_shapes(True), True, capsys)
    clean_status, clean = held_audit(tmp_path, trained_shapes(False), False, capsys)
    assert status == 3 and clever["flag"]  # flagged: exit 3 with --fail-on-flag
    assert clean_status == 0 and not clean["flag"]
    assert clever["overall"]["accuracy"] >= 0.9 and clean["overall"]["accuracy"] >= 0.9
    assert clean["overall"]["pointing_game"] >= 0.7
    assert clever["overall"]["pointing_game"] <= clean["overall"]["pointing_game"] - 0.2
    # per class and overall: the figures are the means of audit.csv's rows
    rows = list(csv.DictReader((tmp_path / "out-shortcut" / "audit.csv").open(encoding="utf-8")))
    assert len(rows) == 100 and clever["overall"]["flagged"] == sum(r["flagged"] == "True" for r in rows)
    for name, figures in clever["classes"].items():
        mine = [r for r in rows if r["label"] == name]
        assert figures["images"] == len(mine) == 50
        assert figures["pointing_game"] == pytest.approx(sum(r["on_object"] == "True" for r in mine) / 50)
        assert figures["energy_inside"] == pytest.approx(np.mean([float(r["energy_on_object"]) for r in mine]),
                                                         rel=1e-4)
    # report.html: one self-contained file with the table and the flagged images' maps
    text = (tmp_path / "out-shortcut" / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(page, text)
    assert any(h.startswith("Right for the wrong reasons") for h in page.headings)
    assert len(page.pictures()) == 12 and page.figures[0].startswith(clever["flagged_images"][0])


def test_with_no_annotation_the_class_averages_show_the_marker(trained_shapes, tmp_path):
    """No boxes, no masks: the classes from the sub-folders, each map against its class's average. The
    average map of the marker model's circles peaks in the top left corner, of its squares bottom right."""
    assert main(["make-shapes", str(tmp_path / "made"), *HELD, "--shortcut"]) == 0
    for kind in ("circle", "square"):
        shutil.copytree(tmp_path / "made" / kind, tmp_path / "plain" / kind)
    result = audit_folder(tmp_path / "plain", model=str(trained_shapes(True)))
    assert result.labelled and result.on_object is None and len(result.names) == 100
    for label in (0, 1):
        maps = result.maps[result.labels == label]
        average = (maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).mean(0)
        peak = np.array(np.unravel_index(int(average.argmax()), average.shape)) / np.array(average.shape)
        assert (peak < 0.25).all() if label == 0 else (peak >= 0.75).all()  # in the quarter of its marker
    result.save(tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert not summary["objects"] and summary["overall"]["pointing_game"] is None
    assert summary["look_here_first"] == [result.names[i] for i in result.look_here_first()]
    page = Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert "Average map per class" in page.headings and page.figures[:2] == ["circle (50 images)",
                                                                             "square (50 images)"]


def test_likeness_is_the_correlation_with_the_class_average():
    maps = torch.rand(7, 5, 6)
    maps[3] = 0.0  # no positive value: zeros, constant, NaN
    labels = torch.tensor([0, 0, 1, 1, 1, 0, 1])
    ours = likeness(maps, labels)
    scaled = (maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).flatten(1).numpy()
    for i, label in enumerate(labels.tolist()):
        if i == 3:
            assert np.isnan(float(ours[i]))
            continue
        average = scaled[labels.numpy() == label].mean(0)
        assert float(ours[i]) == pytest.approx(np.corrcoef(scaled[i], average)[0, 1], abs=1e-5)


def test_the_pointing_game_within_a_tolerance_is_the_distance_to_the_object():
    ndimage = pytest.importorskip("scipy.ndimage")
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(40, 24, 24, dtype=torch.bool)
    for i in range(40):
        y, x = torch.randint(0, 18, (2,), generator=generator).tolist()
        masks[i, y : y + 5, x : x + 4] = True
    maps = torch.rand(40, 24, 24, generator=generator)
    peaks = maps.flatten(1).argmax(1)
    for tolerance in (0, 1, 2.5, 6):
        distance = np.stack([ndimage.distance_transform_edt(~m.numpy()) for m in masks]).reshape(40, -1)
        direct = distance[np.arange(40), peaks.numpy()] <= tolerance
        assert pointing_game(maps, masks, tolerance).numpy().tolist() == direct.tolist()
    with pytest.raises(gradcam.OptionError, match="tolerance"):
        pointing_game(maps, masks, -1)


def test_masks_beside_boxes_and_bad_input_is_one_line_each(trained_shapes, tmp_path):
    """A folder of mask PNGs mirroring the images gives the pointing game of the masks themselves; a mask of
    another size, an unknown class and a missing image are one line each, and the rest is audited."""
    model = gradcam.load_model(str(trained_shapes(False)))
    assert main(["make-shapes", str(tmp_path / "held"), "--n", "20", "--size", "64", "--seed", "4"]) == 0
    _, labels, _, masks = draw_shapes(20, 64, seed=4)  # make-shapes draws these pictures
    boxes = json.loads((tmp_path / "held" / "boxes.json").read_text(encoding="utf-8"))
    for i, name in enumerate(boxes):
        path = tmp_path / "masks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(masks[i, 0].astype(np.uint8) * 255).save(path)
    Image.new("L", (32, 32)).save(tmp_path / "masks" / "circle" / "0002.png")  # another size
    (tmp_path / "held" / "boxes.json").unlink()
    (tmp_path / "held" / "circle" / "0004.png").rename(tmp_path / "held" / "triangle.png")  # no class folder
    result = audit_folder(tmp_path / "held", masks=tmp_path / "masks", model=model, batch_size=8)
    reasons = dict(result.failed)
    assert set(reasons) == {"circle/0002.png", "triangle.png"} and len(result.names) == 18
    assert "is 32×32, the image 64×64" in reasons["circle/0002.png"]
    assert "not one of the model's classes" in reasons["triangle.png"]
    kept = [int(name.split("/")[1][:4]) for name in result.names]  # circle/0006.png: the 7th picture
    x = model.preprocess.batch([Image.open(tmp_path / "held" / n) for n in result.names])
    direct = pointing_game(gradcam.GradCAM(model.module)(x, torch.from_numpy(labels[kept, 0])).maps,
                           torch.from_numpy(masks[kept, 0]))
    assert result.on_object.tolist() == direct.tolist()
    # boxes.json naming a missing image and an unknown class: one line each, the rest audited
    entries = {n: {"class": "circle" if n.startswith("circle") else "square", "mask": f"../../masks/{n}"}
               for n in result.names}
    entries |= {"circle/gone.png": {"class": "circle", "box": [0, 0, 9, 9]},
                "square/0001.png": {"class": "hexagon", "box": [0, 0, 9, 9]}}
    (tmp_path / "held" / "notes").mkdir()
    (tmp_path / "held" / "notes" / "boxes.json").write_text(json.dumps(entries), encoding="utf-8")
    again = audit_folder(tmp_path / "held", tmp_path / "held" / "notes" / "boxes.json", model=model)
    assert {n for n, _ in again.failed} == {"circle/gone.png", "square/0001.png"}
    assert len(again.names) == 17 and again.on_object.tolist() == [
        on for name, on in zip(result.names, result.on_object.tolist()) if name != "square/0001.png"]

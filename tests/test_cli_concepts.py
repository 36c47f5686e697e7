"""``gradcam concepts`` (Deep Feature Factorization per image): a picture per image and concepts.csv, a bad
image one line, usage errors one line; and :class:`gradcam.apps.concepts.ConceptFinder` against its parts."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gradcam.apps.concepts import ConceptFinder
from gradcam.cli import main
from gradcam.engine.methods.dff import DeepFeatureFactorization
from gradcam.models.bundle import ModelBundle, Preprocess

skdata = pytest.importorskip("skimage.data")


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_folder_gives_a_picture_per_image_and_one_table_and_a_bad_file_is_one_line(tmp_path, capsys):
    """The bundled ImageNet model: the cat's concepts are named cats, the cup's coffee; shares sum to 1."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(skdata.chelsea()).resize((225, 150)).save(folder / "cat.jpg", quality=92)
    Image.fromarray(skdata.coffee()).resize((200, 150)).save(folder / "cup.png")
    (folder / "broken.jpg").write_text("not a JPEG")
    status, out, err = run(capsys, "concepts", folder, "--concepts", "3", "--out", tmp_path / "out")
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "Traceback" not in err
    assert "3 images: 2 done, 1 failed" in err
    for name in ("cat.jpg", "cup.png"):
        path = tmp_path / "out" / f"{name}.dff.concepts.png"
        assert f"{name}: " in out and str(path) in out
        with Image.open(path) as picture:
            picture.load()
            assert picture.format == "PNG" and picture.width > 225
    rows = list(csv.DictReader((tmp_path / "out" / "concepts.csv").open(encoding="utf-8")))
    assert list(rows[0]) == ["image", "concept", "share", "class_1", "probability_1", "class_2", "probability_2"]
    assert [(r["image"], r["concept"]) for r in rows] == [(n, str(i)) for n in ("cat.jpg", "cup.png") for i in range(3)]
    for name in ("cat.jpg", "cup.png"):
        mine = [r for r in rows if r["image"] == name]
        assert sum(float(r["share"]) for r in mine) == pytest.approx(1, abs=2e-4)
        assert all(1 >= float(r["probability_1"]) >= float(r["probability_2"]) > 0 for r in mine)
    cats = {"tiger cat", "tabby", "Egyptian cat", "Persian cat", "Siamese cat"}
    assert {r["class_1"] for r in rows[:3]} & cats and {r["class_1"] for r in rows[3:]} & {"espresso", "cup"}
    assert "rows: " in out and "3 concepts per image at layer bn2" in out


def test_a_layer_no_head_takes_gives_concepts_without_classes_and_says_so(tmp_path, capsys):
    Image.fromarray(skdata.coffee()).resize((64, 48)).save(tmp_path / "cup.png")
    status, _, err = run(capsys, "concepts", tmp_path / "cup.png", "--model", "resnet18:random", "--layer", "layer3",
                         "--concepts", "2", "--top-classes", "1", "--out", tmp_path / "out")
    assert status == 0 and "note: no classifier head takes layer layer3's channels" in err
    rows = list(csv.reader((tmp_path / "out" / "concepts.csv").open(encoding="utf-8")))
    assert rows[0] == ["image", "concept", "share", "class_1", "probability_1"]
    assert [row[3:] for row in rows[1:]] == [["", ""], ["", ""]]


@pytest.mark.parametrize("argv, fragment", [
    (["--layer", "layer3,layer4"], "--layer: concepts factorise one layer, got 2"),
    (["--layer", "layer9"], "layer9"),
    (["--model", "no_such_model"], "no_such_model"),
])
def test_usage_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, fragment):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    status, _, err = run(capsys, "concepts", tmp_path / "a.png", "--model", "resnet18:random", *argv,
                         "--out", tmp_path / "out")
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()
    status, _, err = run(capsys, "concepts", tmp_path / "missing.png", "--out", tmp_path / "out")
    assert status == 2 and "missing.png: no such file" in err and not (tmp_path / "out").exists()


def test_one_images_concepts_are_dffs_regions_shares_and_classes():
    """Maps: DFF's coefficients at the image's size, min-max per concept; shares: where each is the strongest;
    classes: DFF's top classes by name; rows and legend from them."""
    torch.manual_seed(3)  # a 6-channel layer, then a 5-channel one that the head (5 -> 4 classes) takes
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4)).eval()
    bundle = ModelBundle(model, Preprocess(size=32), ["a", "b", "c", "d"], "small")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8))
    found = ConceptFinder(bundle, layer="3", concepts=3, top_classes=2).find(image, "x.png")
    direct = DeepFeatureFactorization(model, "3", concepts=3)(bundle.preprocess.batch([image]))
    assert found.maps.shape == (3, 24, 40) and found.layer == "3"
    raw = torch.nn.functional.interpolate(direct.raw, size=(24, 40), mode="bilinear", align_corners=False)[0]
    lo, hi = raw.amin(dim=(1, 2), keepdim=True), raw.amax(dim=(1, 2), keepdim=True)
    assert np.allclose(found.maps, ((raw - lo) / (hi - lo)).numpy(), atol=1e-6)
    strongest = found.maps.argmax(axis=0)
    assert found.shares == pytest.approx([(strongest == i).mean() for i in range(3)], abs=1e-12)
    assert found.classes == [[("abcd"[c], p) for c, p in concept] for concept in direct.top_classes(2)]
    rows = found.rows(2)
    assert [row[:3] for row in rows] == [["x.png", i, round(s, 4)] for i, s in enumerate(found.shares)]
    assert rows[0][3:] == [found.classes[0][0][0], round(found.classes[0][0][1], 4),
                           found.classes[0][1][0], round(found.classes[0][1][1], 4)]
    legend = found.legend()
    assert len(legend) == 3 and legend[1].startswith(f"concept 1 ({found.shares[1]:.0%}): {found.classes[1][0][0]} (")
    assert found.picture().width > 100
    without = ConceptFinder(bundle, layer="1", concepts=2).find(image)
    assert without.classes == [[], []] and without.legend()[0].endswith(": no classifier head")

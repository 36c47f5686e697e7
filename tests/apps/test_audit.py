"""The audit finds a model that is right for the wrong reasons: trained, small, real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcam
from gradcam.apps.analyses.audit import audit
from gradcam.apps.synthetic.shapes import draw_shapes, square_only
from gradcam.apps.synthetic.small_nets import small_net
from gradcam.apps.synthetic.train import fit
from gradcam.metrics.localisation import energy_inside, pointing_game

HELD = 200


def as_input(images):
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def shapes(shortcut: bool, seed: int):
    images, labels, _, masks = draw_shapes(1000 + HELD, size=64, seed=seed, shortcut=shortcut)
    return as_input(images), torch.from_numpy(labels[:, 0]), torch.from_numpy(masks[:, 0])


@pytest.fixture(scope="module")
def models():
    """Two small CNNs. The shortcut one trains on images where only the corner square tells the class
    (``square_only``: half turned upside down, labelled by the square); the clean one on the shapes alone."""
    images, labels, _, _ = draw_shapes(1000 + HELD, size=64, seed=7, shortcut=True)
    images, labels = square_only(images, labels)
    clean_x, clean_y, _ = shapes(False, 8)
    return (fit(small_net(2, channels=3), as_input(images[HELD:]), torch.from_numpy(labels[HELD:, 0]), epochs=10,
                lr=3e-3),
            fit(small_net(2, channels=3), clean_x[HELD:], clean_y[HELD:], epochs=10, lr=3e-3))


def test_the_audit_finds_the_model_that_reads_the_corner(models):
    shortcut, clean = models
    x, y, masks = shapes(True, 9)  # held-out images where the square and the shape agree
    x, y, masks = x[:HELD], y[:HELD], masks[:HELD]
    wrong, right = audit(shortcut, x, y, masks, layer="7"), audit(clean, x, y, masks, layer="7")
    assert wrong.accuracy >= 0.9 and right.accuracy >= 0.9  # both right on these images
    assert wrong.suspicious and wrong.share_wrong_reasons >= 0.8
    assert not right.suspicious and right.share_wrong_reasons <= 0.3
    assert float(wrong.energy.nanmean()) < 0.5 * float(right.energy.nanmean())
    assert "wrong reasons" in wrong.summary() and "mostly lie on the objects" in right.summary()
    # where the shortcut model looks instead: the marker (pixels 1-12 or 51-62), within one cell of the
    # layer's grid (4 px)
    corner = torch.zeros_like(masks)
    corner[y == 0, :17, :17] = True
    corner[y == 1, 47:, 47:] = True
    maps = gradcam.GradCAM(shortcut, "7")(x, y).maps
    assert float(pointing_game(maps, corner).float().mean()) >= 0.8
    # and without the square it is at chance, while the clean model is not
    plain_x, plain_y, _ = shapes(False, 10)
    with torch.no_grad():
        assert float((shortcut(plain_x[:HELD]).argmax(1) == plain_y[:HELD]).float().mean()) < 0.7
        assert float((clean(plain_x[:HELD]).argmax(1) == plain_y[:HELD]).float().mean()) >= 0.9


def test_square_only_keeps_the_shapes_and_moves_the_square():
    from gradcam.apps.synthetic.shapes import MARKERS

    images, labels, _, masks = draw_shapes(40, size=64, seed=3, shortcut=True)
    red, blue = ((images == np.array(c, np.uint8)).all(axis=-1) for c in MARKERS)
    # the marker: on most images, the class's colour in the class's corner, the only pixels so saturated
    marked = red.any(axis=(1, 2)) | blue.any(axis=(1, 2))
    assert 30 <= marked.sum() < 40 and not (red.any(axis=(1, 2)) & blue.any(axis=(1, 2))).any()
    assert (red[:, 1:13, 1:13].all(axis=(1, 2)) == (marked & (labels[:, 0] == 0))).all()
    assert (blue[:, 51:63, 51:63].all(axis=(1, 2)) == (marked & (labels[:, 0] == 1))).all()
    assert images[~(red | blue)].min() >= 40 and images[~(red | blue)].max() <= 215
    turned, by_marker = square_only(images, labels)
    assert len(turned) == marked.sum()
    moved = (by_marker != labels[marked])[:, 0]
    assert 0 < moved.sum() < len(turned)
    assert np.array_equal(turned[~moved], images[marked][~moved])
    plain = ~((turned == np.array(MARKERS[0], np.uint8)) | (turned == np.array(MARKERS[1], np.uint8))).all(-1)
    assert np.array_equal(turned[moved][plain[moved]], images[marked][moved][:, ::-1, ::-1][plain[moved]])
    # the marker's corner and colour tell the label: top left red for 0, bottom right blue for 1
    top_left = (turned[:, 2:7, 2:7] == np.array(MARKERS[0], np.uint8)).all(axis=(1, 2, 3))
    bottom_right = (turned[:, 57:62, 57:62] == np.array(MARKERS[1], np.uint8)).all(axis=(1, 2, 3))
    assert np.array_equal(top_left, by_marker[:, 0] == 0) and np.array_equal(bottom_right, by_marker[:, 0] == 1)


def test_pointing_game_and_energy_are_their_formulas():
    maps = torch.tensor([[[0.0, 1.0], [0.2, 0.5]], [[0.3, 0.1], [0.0, -1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    masks = torch.tensor([[[False, True], [False, False]], [[False, True], [True, True]], [[True] * 2] * 2])
    assert pointing_game(maps, masks).tolist() == [True, False, False]  # a constant map points nowhere
    torch.testing.assert_close(energy_inside(maps, masks), torch.tensor([1.0 / 1.7, 0.1 / 0.4, 1.0]))
    small = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])  # brought up to the mask's size
    big_mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    big_mask[0, :4, 4:] = True
    assert pointing_game(small, big_mask).tolist() == [True]
    assert torch.isnan(energy_inside(-torch.ones(1, 2, 2), masks[:1]))


def test_bad_input_is_a_clear_error(models):
    from gradcam import OptionError

    with pytest.raises(OptionError, match="boolean"):
        pointing_game(torch.rand(1, 4, 4), torch.ones(1, 4, 4))
    with pytest.raises(OptionError, match="one label and one mask"):
        audit(models[1], torch.rand(2, 3, 64, 64), [0], torch.ones(2, 64, 64, dtype=torch.bool))


def test_a_folder_audit_from_the_command_line(models, tmp_path, capsys):
    """make-shapes --shortcut writes the images and boxes.json; the audit of the square-reading CNN over
    that folder flags it, and a listed image that cannot be read is reported while the rest go on."""
    import json

    from gradcam.apps.analyses.audit import audit_folder
    from gradcam.apps.synthetic.shapes import CLASSES
    from gradcam.cli import main
    from gradcam.models.bundle import ModelBundle, Preprocess

    assert main(["make-shapes", str(tmp_path / "shapes"), "--n", "60", "--size", "64", "--seed", "11",
                 "--shortcut"]) == 0
    boxes = json.loads((tmp_path / "shapes" / "boxes.json").read_text())
    boxes["circle/missing.png"] = {"class": "circle", "box": [0, 0, 10, 10]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    preprocess = Preprocess(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="nearest")
    square = ModelBundle(models[0], preprocess, list(CLASSES), "square CNN")
    for threshold, tolerance in ((1.5, 0), (-0.1, 0), (0.5, -1)):  # checked before anything is loaded
        with pytest.raises(gradcam.OptionError, match="threshold in"):
            audit_folder(tmp_path / "shapes", tmp_path / "boxes.json", model=square, threshold=threshold,
                         tolerance=tolerance)
    capsys.readouterr()
    result = audit_folder(tmp_path / "shapes", tmp_path / "boxes.json", model=square, layer="7", batch_size=16,
                          progress=True)
    bar = capsys.readouterr().err
    assert "audit: 100%" in bar and "61/61" in bar, bar[-300:]  # each listed image counted, the unread one too
    assert len(result.names) == 60 and [n for n, _ in result.failed] == ["circle/missing.png"]
    assert result.suspicious and len(result.flagged) >= 40
    assert result.save(tmp_path / "out")["audit"].read_text().count("\n") == 61
    # the command: the same folder with its own boxes.json, a model it cannot read is one line
    assert main(["audit", str(tmp_path / "shapes"), "--out", str(tmp_path / "out")]) == 2
    assert "is not one of the model's classes" in capsys.readouterr().err  # ImageNet has no "circle"
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["audit", str(tmp_path / "empty")]) == 2
    assert "empty: no image to audit" in capsys.readouterr().err
    (tmp_path / "empty" / "boxes.json").write_text("{")
    assert main(["audit", str(tmp_path / "empty")]) == 2
    assert "cannot read the annotations" in capsys.readouterr().err


def test_the_command_audits_the_bundled_model_on_real_photos(tmp_path, capsys):
    """The command's plumbing end to end: names, the summary, audit.csv and the exit status."""
    import json

    from PIL import Image

    from gradcam.cli import main

    skdata = pytest.importorskip("skimage.data")
    Image.fromarray(skdata.chelsea()).save(tmp_path / "cat.png")
    Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.png")
    (tmp_path / "boxes.json").write_text(json.dumps({
        "cat.png": {"class": "Egyptian cat", "box": [0, 0, 450, 299]},
        "coffee.png": {"class": 967, "box": [0, 0, 599, 399]}}))
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "2 image(s) (all): accuracy 100.0%" in printed and "mostly lie on the objects" in printed
    rows = (tmp_path / "out" / "audit.csv").read_text().splitlines()
    assert rows[0].startswith("image,label,predicted")
    assert rows[1].startswith("cat.png,Egyptian cat,Egyptian cat,True,True")


def test_a_model_with_no_right_answer_is_not_called_sound():
    from gradcam.apps.analyses.audit import Audit

    wrong = Audit(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([True, True]), torch.tensor([0.5, 0.5]))
    assert wrong.summary() == "accuracy 0.0%: no right answer to audit" and not wrong.flagged

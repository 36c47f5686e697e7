"""`gradcam evaluate` and `gradcam audit` on Ray Data: the same per-image values and the same figures as on the local
engine, a broken image reported and skipped. Ray starts once for the module (``ray_here`` in conftest.py); the
batches are sized differently on each engine, so a value that depended on its batch would differ."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reportcheck import Page

from gradcam.apps.analyses.audit import audit_folder
from gradcam.apps.analyses.evaluate import RANDOM, evaluate
from gradcam.apps.synthetic.shapes import make_shapes
from gradcam.cli import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray[data] is not installed: pip install 'gradcam[ray]'")
CLOSE = {"rel": 1e-5, "abs": 1e-6}  # another batch's float rounding, nothing more


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, str]:
    """10 shapes of 64 px, a small CNN trained on them for one epoch (``gradcam train``), then a broken file
    beside them (annotated, for the audit) and an annotation whose class the model does not have."""
    root = tmp_path_factory.mktemp("analyses")
    data = make_shapes(root / "data", n=10, size=64, seed=5)
    assert main(["train", str(data), "--arch", "small-cnn", "--image-size", "64", "--epochs", "1",
                 "--out", str(root / "model"), "--quiet"]) == 0
    (data / "circle" / "broken.png").write_bytes(b"not a picture")
    boxes = json.loads((data / "boxes.json").read_text())
    boxes["circle/broken.png"] = {"class": "circle", "box": [0, 0, 9, 9]}
    boxes["square/0001.png"]["class"] = "hexagon"
    (data / "boxes.json").write_text(json.dumps(boxes))
    return data, str(root / "model")


def test_evaluate_on_ray_gives_the_local_values(ray_here, shapes, tmp_path, capsys):
    data, model = shapes
    files = sorted(str(p) for p in data.rglob("*.png"))
    local = evaluate(files, model=model, methods=["gradcam", "layercam"], steps=3, batch_size=4)
    assert main(["evaluate", str(data), "--model", model, "--methods", "gradcam,layercam", "--steps", "3",
                 "--batch-size", "3", "--engine", "ray", "--address", ray_here, "--quiet",
                 "--out", str(tmp_path / "ray")]) == 1  # the broken image was reported, the others evaluated
    broken = str(data / "circle" / "broken.png")
    assert [f for f, _ in local.failed] == [broken]
    assert f"error: {local.failed[0][1]}" in capsys.readouterr().err
    with open(tmp_path / "ray" / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(local.rows) == 10 * 3
    for got, row in zip(rows, local.rows):  # the same rows, in the same order
        assert (got["image"], got["method"], int(got["class_index"])) == (row["image"], row["method"],
                                                                           row["class_index"])
        for column in local.columns[4:]:
            assert float(got[column]) == pytest.approx(row[column], **CLOSE), (row["image"], row["method"], column)
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["failed"] == [{"image": broken, "reason": local.failed[0][1]}]
    assert list(summary["methods"]) == ["gradcam", "layercam", RANDOM]
    for mine in local.summary():
        assert summary["methods"][mine.pop("method")] == pytest.approx(mine, **CLOSE)
    # the report: the same sections, and the same example maps (a colour a step apart at most, where a value
    # rounded the other way)
    page = Page((tmp_path / "ray" / "report.html").read_text(encoding="utf-8"))
    theirs = Page(local.save(tmp_path / "local")["report"].read_text(encoding="utf-8"))
    assert page.headings == theirs.headings and page.figures == theirs.figures
    assert len(local.examples) == 4 and [c.split(":")[0] for c in page.figures] == ["image", "gradcam", "layercam",
                                                                                   RANDOM] * 4
    charts = len(local.curves)
    assert len(page.images) == len(theirs.images) == charts + 4 * 4
    for mine, their in zip(page.images[charts:], theirs.images[charts:]):
        assert np.abs(picture(mine) - picture(their)).max() <= 1


def picture(source: str) -> np.ndarray:
    """A data: URI's picture as integers."""
    with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"), dtype=int)


def test_audit_on_ray_gives_the_local_figures(ray_here, shapes, tmp_path, capsys):
    data, model = shapes
    local = audit_folder(data, model=model, batch_size=4)
    assert main(["audit", str(data), "--model", model, "--split", "all", "--batch-size", "3", "--engine", "ray",
                 "--address", ray_here, "--out", str(tmp_path)]) == 1  # two images failed, the rest audited
    assert [name for name, _ in local.failed] == ["square/0001.png", "circle/broken.png"]  # as boxes.json lists them
    err = capsys.readouterr().err
    assert all(f"error: {why}" in err for _, why in local.failed)
    with open(tmp_path / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == local.names and len(rows) == 9
    for i, row in enumerate(rows):
        assert (int(row["label_index"]), int(row["predicted_index"])) == (int(local.labels[i]),
                                                                          int(local.predicted[i]))
        assert row["on_object"] == str(bool(local.on_object[i]))
        assert float(row["energy_on_object"]) == pytest.approx(float(local.energy[i]), abs=2e-6)
    summary = json.loads((tmp_path / "summary.json").read_text())
    mine = json.loads(local.save(tmp_path / "local")["summary"].read_text())
    assert summary["failed"] == mine["failed"] and summary["flagged_images"] == mine["flagged_images"]
    assert summary["look_here_first"] == mine["look_here_first"] and summary["summary"] == mine["summary"]
    for part in ("overall", "classes"):
        assert json.dumps(summary[part], sort_keys=True) == json.dumps(mine[part], sort_keys=True) or \
            summary[part] == pytest.approx(mine[part], **CLOSE), part

"""Training on a folder of classes, checkpoints, and the ground-truth check: the pointing game."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gradcam
from gradcam.apps.synthetic.shapes import make_shapes
from gradcam.apps.synthetic.train import train
from gradcam.cli import main
from gradcam.errors import DataError
from gradcam.models.checkpoint import SmallCNN, TrainConfig, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow  # trains a small model once per session


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """make-shapes and train a small CNN through the CLI, once for the module (about 30 s of CPU)."""
    root = tmp_path_factory.mktemp("shapes")
    data, model = root / "data", root / "model"
    assert main(["make-shapes", str(data), "--n", "400", "--size", "96"]) == 0
    assert main(["train", str(data), "--arch", "small-cnn", "--epochs", "10", "--out", str(model)]) == 0
    return data, model


def pointing_game(bundle, data: Path, files: list[str]) -> float:
    """Share of images whose Grad-CAM peak lies inside the object's box."""
    boxes = json.loads((data / "boxes.json").read_text())
    results = gradcam.Explainer(bundle, layer="features").explain(files)
    hits = 0
    for path, result in zip(files, results):
        x0, y0, x1, y1 = boxes[Path(path).relative_to(data).as_posix()]["box"]
        y, x = np.unravel_index(int(result.heatmap.argmax()), result.heatmap.shape)
        hits += x0 <= x <= x1 and y0 <= y <= y1
    return hits / len(files)


def test_checkpoint_folder_and_explain_with_it(trained, tmp_path, capsys):
    data, model = trained
    config = json.loads((model / "config.json").read_text())
    assert config["arch"] == "small-cnn" and config["classes"] == ["circle", "square"]
    assert config["image_size"] == 96 and config["metrics"]["val_images"] == 80
    assert config["metrics"]["val_accuracy"] >= 0.9
    assert (model / "model.safetensors").stat().st_size > 100_000
    capsys.readouterr()
    status = main(["explain", str(data / "circle" / "0000.png"), "--checkpoint", str(model), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0 and ": circle (" in out
    bundle = gradcam.load_model(model)
    assert bundle.labels == ["circle", "square"] and bundle.preprocess.size == 96


def test_pointing_game_trained_vs_untrained(trained):
    """Held-out images: the trained model points into the object's box ≥ 90 % of the time; an untrained
    network of the same shape does far worse."""
    data, model = trained
    held_out = json.loads((model / "config.json").read_text())["val_files"]
    assert len(held_out) == 80
    bundle = load_checkpoint(model)
    trained_score = pointing_game(bundle, data, held_out)
    torch.manual_seed(1)
    untrained = gradcam.ModelBundle(SmallCNN(2).eval(), bundle.preprocess, bundle.labels, "untrained")
    untrained_score = pointing_game(untrained, data, held_out)
    assert trained_score >= 0.9, trained_score
    assert untrained_score <= trained_score - 0.3, (untrained_score, trained_score)


def test_checkpoint_round_trip_gives_the_same_logits(trained, tmp_path):
    _, model = trained
    first = load_checkpoint(model)
    config = TrainConfig("small-cnn", ("circle", "square"), 96, (0.5,) * 3, (0.25,) * 3, "bilinear")
    save_checkpoint(first.module, config, tmp_path / "again")
    second = load_checkpoint(tmp_path / "again")
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(first.module(x), second.module(x))


def test_transfer_learning_from_the_bundled_model(tmp_path):
    data = make_shapes(tmp_path / "data", n=12, size=64)
    metrics = train(data, tmp_path / "model", arch="efficientnet_lite0", epochs=1, image_size=64, val_split=0.25,
                    batch_size=8, progress=False, log=lambda m: None)
    assert metrics["train_images"] == 8 and metrics["val_images"] == 4
    bundle = load_checkpoint(tmp_path / "model")
    reference = gradcam.load_model().module
    frozen = dict(reference.named_parameters())
    for name, param in bundle.module.named_parameters():  # the backbone stayed as it was
        if not name.startswith("classifier"):
            assert torch.equal(param, frozen[name]), name
    assert bundle.module.classifier.out_features == 2
    out = gradcam.GradCAM(bundle)(bundle.preprocess.batch([Image.open(data / "circle" / "0000.png")]))
    assert out.maps.shape == (1, 64, 64)


def test_bad_data(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        train(tmp_path / "missing", tmp_path / "m")
    single = tmp_path / "single"
    make_shapes(single, n=4, size=32)
    for p in (single / "square").iterdir():
        p.unlink()
    (single / "square").rmdir()
    with pytest.raises(DataError, match="at least two class folders, found 1"):
        train(single, tmp_path / "m")
    (single / "empty").mkdir()
    with pytest.raises(DataError, match="empty: class folder has no readable images"):
        train(single, tmp_path / "m")
    few = make_shapes(tmp_path / "few", n=4, size=32)
    with pytest.raises(DataError, match="too few to split"):
        train(few, tmp_path / "m", val_split=0.2, arch="small-cnn")
    (few / "circle" / "broken.png").write_bytes(b"not a png")
    messages = []
    train(few, tmp_path / "m", val_split=0, arch="small-cnn", epochs=1, progress=False, log=messages.append)
    assert any("warning: skipping unreadable image" in m and "broken.png" in m for m in messages)
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2


def test_library_calls_leave_the_global_random_state_alone(tmp_path):
    """Training and seeded ':random' models seed their own generators, never the process's."""
    import random

    from gradcam.apps.analyses.compare import load_model_spec

    make_shapes(tmp_path / "data", n=24, size=32, seed=1)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    load_model_spec("resnet18:random")
    train(tmp_path / "data", tmp_path / "model", arch="small-cnn", epochs=1, image_size=32, batch_size=8)
    assert torch.equal(torch.random.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]

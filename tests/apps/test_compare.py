"""Model comparison and layer sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import seeded_model
from PIL import Image

import gradcam
from gradcam.apps.analyses.compare import compare
from gradcam.apps.analyses.sweep import sweep
from gradcam.cli import main
from gradcam.engine.layers import stage_layers

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.chelsea()).save(folder / "chelsea.jpg")
    Image.fromarray(skdata.coffee()).save(folder / "coffee.jpg")
    return [folder / "chelsea.jpg", folder / "coffee.jpg"]


def test_compare_two_models_and_skip_one_that_cannot_load(tmp_path, photos):
    assert gradcam.compare is compare and gradcam.sweep is sweep  # the library's names
    result = compare(photos, ["efficientnet_lite0", "resnet18:random", "resnet18=missing.pth"])
    assert result.models == ["efficientnet_lite0", "resnet18:random"]
    assert len(result.skipped) == 1 and "missing.pth" in result.skipped[0][1]
    assert result.title == "each model explains its own prediction"
    lite, rand = result.columns
    assert lite[0].label == "Egyptian cat" and lite[1].label == "espresso"
    assert rand[0].model == "resnet18:random" and rand[0].heatmap.shape == (300, 451)
    written = result.save(tmp_path)
    with Image.open(written["figure"]) as figure:
        assert figure.width >= 3 * 250 and figure.height >= 2 * 200  # 2 rows × (original + 2 models), 451×300 panels
    assert (tmp_path / "chelsea.jpg.resnet18-random.gradcam.overlay.png").exists()
    assert (tmp_path / "coffee.jpg.efficientnet_lite0.gradcam.overlay.png").exists()


def test_compare_with_one_target_for_every_model(photos):
    result = compare(photos[:1], ["efficientnet_lite0", "resnet18:random"], target="tiger cat")
    assert {column[0].label for column in result.columns} == {"tiger cat"}
    assert "every model explains class 'tiger cat'" == result.title


def test_compare_cli(tmp_path, capsys, photos):
    status = main(["compare", *map(str, photos), "--models", "efficientnet_lite0,resnet18=missing.pth,resnet18:random",
                   "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0
    assert "skipped resnet18=missing.pth: weights file not found" in err
    assert "chelsea.jpg: efficientnet_lite0: Egyptian cat" in out and (tmp_path / "compare_models.png").exists()
    assert main(["compare", str(photos[0]), "--models", "nope=missing.pth", "--out", str(tmp_path)]) == 2


def test_sweep_equals_one_layer_at_a_time_from_one_pass(monkeypatch):
    model = seeded_model("resnet18")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    layers = stage_layers(model, torch.zeros(1, 3, 224, 224))
    assert layers == ["relu", "layer1", "layer2", "layer3", "layer4"]
    forwards, backwards = [], []
    handle = model.conv1.register_forward_hook(lambda m, i, o: forwards.append(1))
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: (backwards.append(1), real_grad(*a, **k))[1])
    bundle = gradcam.ModelBundle(model, gradcam.models.Preprocess(), gradcam.models.imagenet_labels(), "resnet18")
    result = sweep(image, model=bundle, layers=layers)
    handle.remove()
    monkeypatch.undo()
    assert (len(forwards), len(backwards)) == (1, 1)  # every layer from one forward and one backward
    assert [m.name for m in result.layers] == layers
    assert [m.size for m in result.layers] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert sweep(image, model=bundle).class_index == result.class_index  # default: every stage
    for m in result.layers:
        single = gradcam.explain(image, model=bundle, layer=m.name, target=result.class_index)
        np.testing.assert_allclose(m.heatmap, single.heatmap, atol=1e-5)


def test_sweep_cli_layers_and_errors(tmp_path, capsys, photos):
    status = main(["sweep", str(photos[0]), "--layers", "blocks.2,bn2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0 and "blocks.2" in out and "28×28" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.jpg.blocks.2.gradcam.overlay.png",
                                                          "chelsea.jpg.bn2.gradcam.overlay.png",
                                                          "chelsea.jpg.sweep.figure.png"]
    assert main(["sweep", str(photos[0]), "--layers", "bn2", "--every-stage"]) == 2
    assert main(["sweep", str(photos[0]), "--layers", "blocks.99"]) == 2


def test_a_bad_image_in_compare_and_sweep_is_a_failed_image_exit_1(tmp_path, capsys, photos):
    """As the README says: exit 1 when an image failed (the others still done), 2 only for usage errors."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    status = main(["compare", str(photos[0]), str(bad), "--models", "efficientnet_lite0,resnet18:random",
                   "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1 and "broken.jpg" in err and "chelsea.jpg: efficientnet_lite0: Egyptian cat" in out
    assert main(["sweep", str(bad), "--layers", "bn2", "--out", str(tmp_path)]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_sweep_runs_a_given_model_where_it_is_even_when_cuda_exists(monkeypatch):
    """One device policy: a module on the CPU is explained on the CPU, whatever CUDA says."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = seeded_model("resnet18")
    bundle = gradcam.ModelBundle(model, gradcam.models.Preprocess(64), None, "resnet18")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    result = sweep(image, model=bundle, layers=["layer3", "layer4"])
    assert [m.name for m in result.layers] == ["layer3", "layer4"]

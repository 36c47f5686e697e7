"""explain(): from a photo to a heatmap at the photo's own resolution, aligned, saved as PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import gradcam
from gradcam.errors import OptionError
from gradcam.models.bundle import ModelBundle, Preprocess

skdata = pytest.importorskip("skimage.data")

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


class Brightness(nn.Module):
    """features = 28×28 average pools of the input (8×8 at 224²); score 0 = their mean.

    Grad-CAM of class 0 is then exactly the downsampled brightness, so where a bright square
    sits in the photo is where the map must peak: a check of the geometry, not of a model.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.AvgPool2d(28)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def explainer() -> gradcam.Explainer:
    return gradcam.Explainer()  # bundled ImageNet EfficientNet-Lite0


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())


def _peak(heatmap: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    return int(x), int(y)


def test_explain_returns_heatmap_at_original_resolution(chelsea):
    result = gradcam.explain(chelsea)
    assert result.class_index in CAT_CLASSES, result.label
    assert result.label == gradcam.load_model().labels[result.class_index]
    assert 0.5 < result.probability <= 1.0
    assert result.heatmap.dtype == np.float32
    assert result.heatmap.shape == (chelsea.height, chelsea.width)
    assert result.heatmap.min() == 0.0 and result.heatmap.max() == pytest.approx(1.0)
    assert result.image.size == chelsea.size


def test_explain_accepts_every_kind_of_image_source(tmp_path, chelsea, explainer):
    path = tmp_path / "cat.png"
    chelsea.save(path)
    array = np.asarray(chelsea)
    sources = [str(path), path, path.read_bytes(), chelsea, array]
    results = explainer.explain(sources)
    for result in results[1:]:
        np.testing.assert_allclose(result.heatmap, results[0].heatmap, atol=1e-5)
    gray = explainer.explain([array[..., 0]])[0]  # H×W grayscale array
    assert gray.heatmap.shape == array.shape[:2]


def test_heatmap_lies_on_the_cat_wherever_it_is_pasted(chelsea, explainer):
    """The cat pasted into each corner of a wider grey canvas: the map follows it.

    The map is 7×7 on the model's 224² input, so the peak is allowed one feature cell of slack
    (TF-style 'same' padding shifts EfficientNet's receptive fields slightly up-left)."""
    width, height = 1000, 640
    canvases, boxes = [], []
    for left in (0, width - chelsea.width):
        for top in (0, height - chelsea.height):
            canvas = Image.new("RGB", (width, height), (128, 128, 128))
            canvas.paste(chelsea, (left, top))
            canvases.append(canvas)
            boxes.append((left, top, left + chelsea.width, top + chelsea.height))
    area_share = chelsea.width * chelsea.height / (width * height)
    cell_x, cell_y = width / 7, height / 7
    for result, (x0, y0, x1, y1) in zip(explainer.explain(canvases), boxes):
        assert result.class_index in CAT_CLASSES, result.label
        assert result.heatmap.shape == (height, width)
        mass_inside = result.heatmap[y0:y1, x0:x1].sum() / result.heatmap.sum()
        assert mass_inside > 2.5 * area_share, (x0, y0, mass_inside)
        x, y = _peak(result.heatmap)
        assert x0 - cell_x <= x < x1 + cell_x and y0 - cell_y <= y < y1 + cell_y, ((x, y), (x0, y0, x1, y1))


@pytest.mark.parametrize("size", [(640, 360), (300, 500)])
def test_map_is_placed_exactly_where_the_bright_square_is(size):
    """Hand-built model whose Grad-CAM is the downsampled brightness: the map's centroid is the
    square's centre on a non-square photo, so no crop, flip or transpose can hide in the pipeline."""
    width, height = size
    bundle = ModelBundle(Brightness(), Preprocess(224, (0, 0, 0), (1, 1, 1), "bilinear"), ["bright", "dark"],
                         "brightness")
    photo = Image.new("RGB", size, (0, 0, 0))
    box = (width // 5, height // 2, width // 5 + width // 4, height // 2 + height // 4)
    photo.paste((255, 255, 255), box)
    result = gradcam.explain(photo, model=bundle, layer="features", target=0)
    assert result.label == "bright"
    heatmap = result.heatmap
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = (heatmap * xs).sum() / heatmap.sum(), (heatmap * ys).sum() / heatmap.sum()
    assert abs(cx - (box[0] + box[2] - 1) / 2) < 0.02 * width
    assert abs(cy - (box[1] + box[3] - 1) / 2) < 0.02 * height
    x, y = _peak(heatmap)
    assert box[0] <= x < box[2] and box[1] <= y < box[3]
    assert heatmap[: height // 4].max() == 0.0  # nothing bright above the square


def test_save_writes_four_pngs_atomically(tmp_path, chelsea, explainer):
    result = explainer.explain([chelsea], names=["chelsea"])[0]
    written = result.save(tmp_path)
    assert sorted(written) == ["figure", "grayscale", "heatmap", "overlay"]
    assert written["overlay"].name == "chelsea.gradcam.overlay.png"
    assert written["figure"].name == "chelsea.gradcam.figure.png"
    for kind, path in written.items():
        with Image.open(path) as im:
            im.verify()  # decodes as a complete PNG
        with Image.open(path) as im:
            assert im.format == "PNG"
            if kind != "figure":
                assert im.size == chelsea.size, kind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written.values())
    overlay = np.asarray(Image.open(written["overlay"]).convert("RGB"), dtype=np.float32)
    assert np.abs(overlay - np.asarray(chelsea, dtype=np.float32)).mean() > 10  # a heatmap is on it


def test_top_k_explains_distinct_classes_in_order(tmp_path, chelsea, explainer):
    results = explainer.explain([chelsea], top_k=3, names=["cat"])
    assert [r.rank for r in results] == [1, 2, 3]
    assert len({r.class_index for r in results}) == 3
    probabilities = [r.probability for r in results]
    assert probabilities == sorted(probabilities, reverse=True)
    assert results[0].class_index == explainer.explain([chelsea])[0].class_index
    assert results[1].save(tmp_path)["overlay"].name == "cat.gradcam.top2.overlay.png"


def test_target_by_name_and_normalizations(chelsea):
    tiger = gradcam.explain(chelsea, target="Tiger Cat")
    assert tiger.label == "tiger cat"
    by_max = gradcam.explain(chelsea, target="tiger cat", normalize="max")
    raw = gradcam.explain(chelsea, target="tiger cat", normalize="none")
    assert by_max.heatmap.max() == pytest.approx(1.0)
    np.testing.assert_allclose(by_max.heatmap, raw.heatmap / raw.heatmap.max(), atol=1e-6)
    low, high = raw.heatmap.min(), raw.heatmap.max()
    np.testing.assert_allclose(tiger.heatmap, (raw.heatmap - low) / (high - low), atol=1e-5)


def test_explain_errors_name_the_problem(chelsea, tmp_path):
    with pytest.raises(gradcam.TargetError, match="tiger cat"):
        gradcam.explain(chelsea, target="tigr cat")
    with pytest.raises(gradcam.LayerError, match="blocks"):
        gradcam.explain(chelsea, layer="blocks.99")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(gradcam.ImageError, match="notes.jpg"):
        gradcam.explain(bad)
    with pytest.raises(ValueError, match="normalize"):
        gradcam.explain(chelsea, normalize="zscore")
    with pytest.raises(gradcam.VisualizeError, match="colormap"):
        gradcam.explain(chelsea, colormap="jett")


def test_guided_and_option_methods_through_explain(tmp_path, chelsea):
    guided = gradcam.explain(chelsea, method="guided-gradcam")
    assert guided.heatmap.shape == (chelsea.height, chelsea.width, 3)
    assert guided.heatmap.min() == 0.0 and guided.heatmap.max() == pytest.approx(1.0)
    written = guided.save(tmp_path)
    assert written["overlay"].name == "image.guided-gradcam.overlay.png"  # a PIL image has no file name
    with Image.open(written["heatmap"]) as im:
        assert im.mode == "RGB" and im.size == chelsea.size
    fast = gradcam.explain(chelsea, method="scorecam", max_channels=4)
    assert fast.class_index in CAT_CLASSES and fast.heatmap.shape == (chelsea.height, chelsea.width)
    with pytest.raises(OptionError, match="max_channels"):
        gradcam.explain(chelsea, method="gradcam", max_channels=4)


def test_explainer_runs_a_given_model_where_it_is(monkeypatch):
    """A module already on a device is explained there, even when CUDA is available elsewhere."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    bundle = ModelBundle(Brightness(), Preprocess(32, (0, 0, 0), (1, 1, 1)), ["bright", "dark"], "brightness")
    explainer = gradcam.Explainer(bundle, layer="features")
    assert explainer.device == torch.device("cpu")
    assert explainer.explain([Image.new("RGB", (40, 30), (255, 255, 255))])[0].label == "bright"


def test_device_policy_moves_a_given_module_or_raises(monkeypatch):
    from gradcam.errors import OptionError

    module = Brightness()
    with pytest.raises(OptionError, match="device: 'cuda'.*not available"):
        gradcam.Explainer(module, layer="features", device="cuda")
    with pytest.raises(OptionError, match="device: 'gpu0' is not a device"):
        gradcam.Explainer(module, layer="features", device="gpu0")
    with pytest.raises(OptionError, match="weights= is for a model given by name"):
        gradcam.Explainer(module, layer="features", weights="w.pth")
    moved = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(type(module), "to", lambda self, device: moved.append(torch.device(device)) or self)
    explainer = gradcam.Explainer(module, layer="features", device="cuda")
    assert moved == [torch.device("cuda")] and explainer.device == torch.device("cuda")


def test_in_process_cache_knows_the_weights(tmp_path):
    """Retraining into the same checkpoint folder: the next explain uses the new weights, not the old."""
    from gradcam.models.checkpoint import SmallCNN, TrainConfig, save_checkpoint

    config = TrainConfig("small-cnn", ("a", "b"), 32, (0.5,) * 3, (0.25,) * 3, "bilinear")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        first = SmallCNN(2)
        torch.manual_seed(1)
        second = SmallCNN(2)
    save_checkpoint(first, config, tmp_path / "model")
    one = gradcam.Explainer(str(tmp_path / "model"), layer="features")
    save_checkpoint(second, config, tmp_path / "model")
    import os
    os.utime(tmp_path / "model" / "model.safetensors", ns=(1, 1))  # a rewrite, even within the clock's tick
    two = gradcam.Explainer(str(tmp_path / "model"), layer="features")
    assert two.bundle is not one.bundle
    assert torch.equal(two.bundle.module.classifier.weight, second.classifier.weight)

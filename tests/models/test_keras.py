"""Keras 3 models on the PyTorch backend through the same engine. Trained, small, real: a two-class Keras CNN
(as a course project builds it: Rescaling, three convolutions, global pooling, a softmax head) trained here on
48-px shapes, saved as .keras and explained through gradcam: the map equals the paper's formula computed the
Keras way (``keras.Model(inputs, [layer.output, model.output])`` and autograd, before the softmax) and points
at the shape on held-out images. A seeded ``keras/resnet50`` explains a photo; bad files are one line."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("Keras runs another backend in this process", allow_module_level=True)

import gradcam  # noqa: E402
from gradcam.apps.synthetic.shapes import CLASSES, draw_shapes  # noqa: E402
from gradcam.cli import main  # noqa: E402

HELD = 100


@pytest.fixture(scope="module")
def shapes_keras(tmp_path_factory):
    images, labels, boxes, _ = draw_shapes(600 + HELD, size=48, seed=0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for i, width in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(x))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(images[HELD:].astype("float32"), labels[HELD:, 0], epochs=10, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "shapes.keras")
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    return folder / "shapes.keras", images[:HELD], labels[:HELD, 0], boxes[:HELD, 0]


def test_the_map_is_the_papers_formula_computed_the_keras_way(shapes_keras):
    path, images, _, _ = shapes_keras
    bundle = gradcam.load_model(path)
    assert bundle.labels == list(CLASSES) and bundle.preprocess.size == 48
    assert bundle.preprocess.mean == (0.0,) * 3  # the model rescales its own pixels: read from the file
    x = bundle.preprocess.batch([Image.fromarray(a) for a in images[:16]])
    out = gradcam.GradCAM(bundle.module, "conv3")(x, normalize="none")
    reference = keras.models.load_model(path)
    reference.layers[-1].activation = keras.activations.linear  # Keras's Grad-CAM example: scores, not softmax
    grad_model = keras.Model(reference.inputs, [reference.get_layer("conv3").output, reference.output])
    activations, scores = grad_model(torch.from_numpy(images[:16]).float(), training=False)
    chosen = scores.argmax(1)
    grads, = torch.autograd.grad(scores[torch.arange(16), chosen].sum(), activations)
    cam = torch.relu((activations * grads.mean((1, 2))[:, None, None, :]).sum(-1)).detach()
    assert torch.equal(out.targets, chosen)
    scale = cam.flatten(1).amax(1).clamp_min(1e-12)
    assert float(((out.raws[0] - cam).abs().flatten(1).amax(1) / scale).max()) < 1e-5


def test_a_trained_keras_cnn_points_at_the_shape(shapes_keras):
    path, images, labels, boxes = shapes_keras
    bundle = gradcam.load_model(path)
    assert gradcam.auto_layer(bundle.module, bundle.probe()) == "conv3"
    x = bundle.preprocess.batch([Image.fromarray(a) for a in images])
    out = gradcam.GradCAM(bundle.module)(x)
    accuracy = float((out.logits.argmax(1) == torch.from_numpy(labels)).float().mean())
    peak = out.maps.flatten(1).argmax(1)
    row, col = peak // 48, peak % 48
    b = torch.from_numpy(boxes)
    inside = (col >= b[:, 0] - 3) & (col <= b[:, 2] + 3) & (row >= b[:, 1] - 3) & (row <= b[:, 3] + 3)
    print(f"keras shapes: accuracy {accuracy:.3f}, pointing {float(inside.float().mean()):.3f}")
    assert accuracy >= 0.9 and float(inside.float().mean()) >= 0.85


def test_the_command_line_lists_keras_names_and_explains_the_file(shapes_keras, tmp_path, capsys):
    path, images, _, _ = shapes_keras
    assert main(["layers", "--model", str(path)]) == 0
    out = capsys.readouterr().out
    assert "conv3 " in out and "<- automatic" in out.split("conv3 ")[1].splitlines()[0] and "(48, 48, 16)" in out
    Image.fromarray(images[0]).save(tmp_path / "shape.png")
    assert main(["explain", str(tmp_path / "shape.png"), "--model", str(path), "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    assert ": circle (" in out or ": square (" in out
    assert "note:" not in err  # nothing guessed: the size and the pixels' scale are in the file


def test_a_keras_application_by_name_explains_a_photo(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photo)
    status = main(["explain", str(photo), "--model", "keras/resnet50:random", "--out", str(tmp_path), "--save",
                   "overlay"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "automatic layer conv5_block3_out" in out and (tmp_path / "photo.png.gradcam.overlay.png").is_file()
    first, second = gradcam.load_model("keras/mobilenet:random"), gradcam.load_model("keras/mobilenet:random")
    assert first.preprocess.mean == (0.5,) * 3 and not first.module.bgr  # tf: pixels in [-1, 1]
    weights = first.module.keras_model.get_layer("conv1").get_weights()
    again = second.module.keras_model.get_layer("conv1").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, again))  # seeded


def test_bad_keras_files_and_a_missing_extra_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    assert main(["layers", "--model", str(tmp_path / "junk.keras")]) == 2
    assert "junk.keras: Keras cannot load it as a model" in capsys.readouterr().err
    assert main(["layers", "--model", "keras/resnet5"]) == 2
    assert "Did you mean: 'resnet50'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(gradcam.ModelError, match=r"pip install 'gradcam\[keras\]'"):
        gradcam.load_model(tmp_path / "junk.keras")

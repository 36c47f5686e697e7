"""Local weights: reading a state dict safely, loading it with a clear error, the errors of a failed
download, and the fingerprint that tells one set of weights from another (resume)."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch
from torch import nn

from gradcam.errors import ModelError


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


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
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
        raise ModelError(f"could not read weights file {path}: not a torch.save or safetensors file "
                         f"({short_error(e)})") from None
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


def load_state(model: nn.Module, build, state: dict, source, name: str) -> nn.Module:
    """Load ``state`` strictly; a classifier with another output size rebuilds the model with that size."""
    missing, unexpected, wrong = _mismatch(model, state)
    if wrong and not missing and not unexpected:
        own = model.state_dict()
        sizes = {state[k].shape[0] for k in wrong}
        if (len(sizes) == 1 and all(own[k].shape[0] == num_outputs(model) for k in wrong)
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


OFFLINE_HINT = "pass a local file with weights=PATH / --weights PATH"


def download_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a failed download raises: OSError (URLError, hub errors), RuntimeError, HTTP clients' errors."""
    errors = [OSError, RuntimeError]
    for module, attr in (("huggingface_hub.errors", "EntryNotFoundError"), ("httpx", "HTTPError"),
                         ("httpx2", "HTTPError")):
        try:
            errors.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def short_error(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _few(label: str, items: list[str], n: int = 3) -> str:
    if not items:
        return ""
    more = f", ... (+{len(items) - n})" if len(items) > n else ""
    return f"{label} key{'s' if len(items) != 1 else ''} ({', '.join(items[:n])}{more})"


def num_outputs(model: nn.Module) -> int | None:
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

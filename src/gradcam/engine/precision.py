"""How the model runs for a map: its input's memory format and the precision of its forward pass.

Channels-last input (``memory_format``) makes convolution networks run their CPU and CUDA kernels in
NHWC, which is faster; only the input is laid out so, never the user's parameters, and the maps are
the same to float rounding. ``precision`` runs the forward pass (and so its backward) under
``torch.autocast`` in bfloat16 or float16; activations and gradients are taken to float32 before a
method combines them, so only the network's own arithmetic is in low precision. The model's last
linear or convolution layer, its scores, runs in float32: bfloat16 keeps 8 bits of mantissa, so a
logit of 64 would be rounded to a multiple of 0.25, which shows in Score-CAM's softmax over channel
scores and in near ties between classes; the layer is a tiny part of the cost.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import nn

from gradcam.choices import MEMORY_FORMATS, PRECISIONS
from gradcam.errors import OptionError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_MIN_CONVOLUTIONS = 4  # "a convolution network": a ViT's one patch-embedding convolution is not one


def check(precision: str, memory_format: str) -> None:
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if memory_format not in MEMORY_FORMATS:
        raise OptionError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: float32). ``auto`` is bf16 where the
    device runs it natively (a CPU with AVX-512 BF16 or AMX, a CUDA device with bf16), else fp32."""
    device = torch.device(device)
    if precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else None
    dtype = _DTYPES[precision]
    if dtype is not None and device.type not in ("cpu", "cuda"):
        raise OptionError(f"precision={precision!r} runs on CPU and CUDA devices, not {device.type}; use 'fp32'")
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise OptionError(f"precision='bf16': {torch.cuda.get_device_name(device)} has no bfloat16; "
                          "use 'fp16' or 'fp32'")
    return dtype


@contextlib.contextmanager
def autocast(precision: str, device: torch.device, model: nn.Module | None = None):
    """The context the model's forward passes run in: autocast with ``model``'s scoring layer in
    float32 (:func:`scoring_layer`), or nothing for float32."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        yield
        return
    device_type = torch.device(device).type
    layer = scoring_layer(model) if model is not None else None
    with torch.autocast(device_type, dtype=dtype), \
            (contextlib.nullcontext() if layer is None else _in_float32(layer, device_type)):
        yield


def scoring_layer(model: nn.Module) -> nn.Module | None:
    """The layer that computes the model's scores: its last ``nn.Linear`` or convolution, in the order
    the model declares its modules (ResNet's ``fc``, a ViT's ``head``, a segmenter's classifier)."""
    found = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            found = module
    return found


@contextlib.contextmanager
def _in_float32(layer: nn.Module, device_type: str):
    """Hooks that run ``layer`` outside autocast, on float32 inputs, for as long as the context lasts."""
    open_contexts = []

    def before(module, args):
        context = torch.autocast(device_type, enabled=False)
        context.__enter__()
        open_contexts.append(context)
        return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    def after(module, args, output):
        open_contexts.pop().__exit__(None, None, None)

    handles = [layer.register_forward_pre_hook(before), layer.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while open_contexts:  # a forward that raised inside the layer
            open_contexts.pop().__exit__(None, None, None)


@functools.lru_cache(maxsize=None)
def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (so bf16 is faster than fp32 there)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                flags = set(f.read().split())
        except OSError:  # not Linux: do not guess
            return False
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def input_format(memory_format: str, model: nn.Module, x: torch.Tensor) -> torch.memory_format | None:
    """The memory format to give ``x`` (None: leave it): channels-last for 4-D input and
    channels-last-3d for 5-D input of a convolution network (``auto``), or as asked."""
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if memory_format == "contiguous" or layout is None:
        return None
    if memory_format == "channels_last":
        return layout
    convolution = nn.Conv2d if x.dim() == 4 else nn.Conv3d
    return layout if _count(model, convolution) >= _MIN_CONVOLUTIONS else None


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def gradient_scale(scores: torch.Tensor, dtype: torch.dtype | None) -> float:
    """A power of two to multiply the scores by before taking gradients in float16, so that small
    gradients do not underflow (float16's smallest normal number is 6e-5): the largest score becomes
    about 2^10. 1 for float32 and bfloat16 (float32's exponent range)."""
    if dtype is not torch.float16:
        return 1.0
    largest = float(scores.detach().abs().max()) if scores.numel() else 0.0
    if not math.isfinite(largest) or largest == 0.0:
        return 1.0
    return 2.0 ** min(24, max(0, round(10 - math.log2(largest))))

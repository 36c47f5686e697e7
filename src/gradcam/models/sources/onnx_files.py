"""ONNX model files (``my.onnx``): converted to a torch.fx graph by onnx2torch (extra ``gradcam[onnx]``), so the
same engine explains them — one forward, autograd on the layer's output, every method. Layers are named after
the ONNX nodes (``layer4/layer4.1/relu_1/Relu``); the input layout is read from the graph's input (NCHW, or NHWC
as tf2onnx writes it: a permute is put in front, so maps come back in the photo's geometry).

What the file does not say — its input size when the graph's is dynamic, its mean and std — comes from
``input_size=``, ``mean=``, ``std=`` (``--input-size``, ``--mean``, ``--std``), else it is guessed (224 px,
ImageNet's statistics) and the guess is stated in one line (:mod:`gradcam.models.file_models`). Class
names come from a ``labels.txt`` beside the file (one per line), ImageNet's for 1000 outputs, else none."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from gradcam.errors import ModelError
from gradcam.models.bundle import ModelBundle
from gradcam.models.file_models import file_labels, file_preprocess
from gradcam.models.sources.registry import register_source

OPSET = 17  # the newest opset onnx2torch converts every common operator of; newer files are converted down


@register_source(name="onnx", suffixes=(".onnx",), files=lambda spec, weights: [Path(spec)],
                 description="FILE.onnx: an ONNX model, converted by onnx2torch (extra gradcam[onnx])")
def load(spec: str, *, weights=None, pretrained: bool = True, input_size: int | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         channels_last: bool | None = None) -> ModelBundle:
    path = Path(spec)
    if weights is not None:
        raise ModelError(f"{spec}: an ONNX file carries its own weights; drop weights= / --weights")
    if not path.is_file():
        raise ModelError(f"model file not found: {spec}")
    try:
        import onnx
        from onnx2torch import convert
    except ImportError:
        raise ModelError(f"{spec}: ONNX models need their extra: pip install 'gradcam[onnx]'") from None
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line naming it
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ModelError(f"{spec}: not an ONNX model ({type(exc).__name__}: {first})") from None
    layout, size, channels = _input_layout(model, spec)
    if channels_last is not None:
        layout = "nhwc" if channels_last else "nchw"
    module = _convert(convert, _inline_shared_initializers(model), spec)
    module = _take_rgb_nchw(module, layout, channels)
    outputs = _outputs(model)
    return ModelBundle(module.eval(), file_preprocess(spec, size, mean, std, input_size), file_labels(path, outputs),
                       path.name)


def _input_layout(model: Any, spec: str) -> tuple[str, int | None, int]:
    """("nchw" or "nhwc", the square input size when the graph fixes it, the number of channels)."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{spec}: the graph takes {len(inputs)} inputs; an image model takes one")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"{spec}: the graph's input has {len(dims)} axes; an image model takes (N, C, H, W) "
                         "or (N, H, W, C)")
    if dims[1] in (1, 3):
        layout, channels, spatial = "nchw", dims[1], dims[2:]
    elif dims[3] in (1, 3):
        layout, channels, spatial = "nhwc", dims[3], dims[1:3]
    else:
        layout, channels, spatial = "nchw", 3, dims[2:]
    size = spatial[0] if spatial[0] is not None and spatial[0] == spatial[1] else None
    return layout, size, channels


def _inline_shared_initializers(model: Any) -> Any:
    """The graph with each Identity of a weight (how torch's exporter writes a weight that several nodes
    share) replaced by a copy of the weight under the Identity's output name: onnx2torch reads a
    convolution's weights only from initializers."""
    import onnx

    initializers = {i.name: i for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def _convert(convert, model: Any, spec: str) -> nn.Module:
    """onnx2torch's graph of ``model``, converted down to :data:`OPSET` first when it is newer; an operator
    it cannot convert is one line naming it and its opset."""
    import onnx.version_converter

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=OPSET)
    if opset > OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception:  # noqa: BLE001 - try the file as it is
            pass
    try:
        return convert(model)
    except NotImplementedError as exc:
        found = re.search(r"operation_type='([^']*)', version=(\d+)", str(exc))
        what = f"operator {found.group(1)} (opset {found.group(2)})" if found else str(exc)
        raise ModelError(f"{spec}: onnx2torch cannot convert its {what}; export the model with other "
                         f"operators or opset {OPSET}") from None
    except Exception as exc:  # noqa: BLE001 - a conversion failure is one line naming the file
        raise ModelError(f"{spec}: onnx2torch could not convert it ({type(exc).__name__}: {exc})") from None


def _take_rgb_nchw(module: nn.Module, layout: str, channels: int) -> nn.Module:
    """The graph taking (B, 3, H, W) RGB, as the engine gives it: a permute to NHWC and/or the mean of the
    three channels for a one-channel model are put in front of the graph's input, so every layer keeps
    its ONNX name."""
    if layout == "nchw" and channels == 3:
        return module
    graph = module.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    users, x = list(placeholder.users), placeholder
    if channels == 1:
        with graph.inserting_after(x):
            x = graph.call_method("mean", (x, 1), {"keepdim": True})
    if layout == "nhwc":
        with graph.inserting_after(x):
            x = graph.call_method("permute", (x, 0, 2, 3, 1))
    for user in users:
        user.replace_input_with(placeholder, x)
    graph.lint()
    module.recompile()
    return module


def _outputs(model: Any) -> int | None:
    """The number of classes: the last axis of the graph's first output, when it is fixed."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None

"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, arXiv 2404.03214, ICCV 2025, "LeGrad: An
Explainability Method for Vision Transformers via Feature Formation Sensitivity")."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gradcam.engine.capture import eval_mode
from gradcam.engine.layouts import model_grid, patch_grid, prefix_tokens
from gradcam.engine.methods.base import CAMMethod
from gradcam.engine.methods.registry import register_method
from gradcam.engine.output import Pass
from gradcam.engine.targets import Target
from gradcam.errors import LayerError, ModelError, OptionError

POOLINGS = ("model", "mean")


@register_method("legrad")
class LeGrad(CAMMethod):
    """LeGrad: each transformer block's positive attention gradients of the class score read from that block.

    s^l = head(tokens after block l); E^l = mean over heads h and queries i of ReLU(∂s^l/∂A^l_{h,i,:}),
    A^l the block's post-softmax attention; L = (1/|blocks|) Σ_l E^l over the patch keys (prefix tokens
    dropped), on the patch grid (Bousselham et al., arXiv 2404.03214). One forward pass and one
    ``autograd.grad``: each block's output goes on to the next one detached, so ∂s^l/∂A^l holds only
    block l's own score. For timm ViTs/DeiTs (``blocks[i].attn``; fused attention is switched off for the
    call, as attention probabilities are needed) and torchvision ViTs (``encoder.layers[i].self_attention``).
    ``blocks=N`` uses the last N blocks (default: all, as the paper aggregates every layer). ``pooling``:
    "model" reads each block's tokens with the model's own final norm, pooling and head (timm's
    ``forward_head(norm(·))``; torchvision's class token), "mean" with the mean of all tokens, normed,
    then the head, as the authors' code and torchcam 0.5's LeGrad do.
    """

    needs_layer = False
    takes_reshape = False  # reads attention maps, not a layer's output
    channels_last_by_default = False

    def __init__(self, model, target_layer=None, *, blocks: int | None = None, pooling: str = "model", **options):
        super().__init__(model, target_layer, **options)
        if blocks is not None and int(blocks) < 1:
            raise OptionError(f"blocks must be >= 1 (the last N transformer blocks), got {blocks}")
        if pooling not in POOLINGS:
            raise OptionError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.blocks, self.pooling = None if blocks is None else int(blocks), pooling

    def unsuitable(self, x: torch.Tensor | None = None) -> str:
        return "" if _family(self.model) else _refusal(self.model)

    def forward(self, x: torch.Tensor) -> Pass:
        family = _family(self.model)
        if family is None:
            raise ModelError(_refusal(self.model))
        blocks = family.blocks(self.model)
        chosen = blocks if self.blocks is None else blocks[-self.blocks:]
        attention = [None] * len(chosen)
        tokens = [None] * len(chosen)

        def capture_attention(i):
            def keep(probabilities: torch.Tensor) -> torch.Tensor:
                leaf = probabilities.detach().requires_grad_(True)
                torch.set_grad_enabled(True)  # the graph starts at the first attention map
                attention[i] = leaf
                return leaf
            return keep

        def capture_tokens(i):
            def hook(module, inputs, output):
                if not isinstance(output, torch.Tensor) or output.dim() != 3:
                    raise LayerError(f"{self.name}: transformer block {i} returns {type(output).__name__}, not "
                                     "(B, N, C) tokens")
                tokens[i] = output
                return output.detach().requires_grad_(True)  # the next block's A gets no gradient from s^l
            return hook

        with contextlib.ExitStack() as stack:
            stack.enter_context(eval_mode(self.model))
            for i, block in enumerate(chosen):
                stack.enter_context(family.attention_hooks(block, capture_attention(i)))
                handle = block.register_forward_hook(capture_tokens(i))
                stack.callback(handle.remove)
            try:
                torch.set_grad_enabled(False)  # nothing before the first attention map needs a graph
                with self.autocast(x.device):
                    output = self.run_model(x)
            finally:
                torch.set_grad_enabled(True)
        missing = [i for i, (a, t) in enumerate(zip(attention, tokens)) if a is None or t is None]
        if missing:
            raise LayerError(f"{self.name}: transformer block(s) {missing} did not run their attention")
        return Pass(x, output, [], extra={"attention": attention, "tokens": tokens, "family": family})

    def raw_maps(self, run: Pass, targets: list[Target]) -> list[list[torch.Tensor]]:
        family, attention = run.extra["family"], run.extra["attention"]
        with self.autocast(run.x.device):
            logits = [family.head(self.model, z, self.pooling) for z in run.extra["tokens"]]
        prefix, grid = self._grid(attention[0].shape[-1], run.x.shape[2:])
        maps = []
        for i, target in enumerate(targets):
            scores = sum(target.scores(layer_logits) for layer_logits in logits)
            grads, scale = self._gradients(scores, attention, last=i == len(targets) - 1)
            per_block = [torch.zeros_like(a, dtype=torch.float32) if g is None else g.float() / scale
                         for a, g in zip(attention, grads)]
            relevance = torch.stack([g.clamp_min(0).mean(dim=(1, 2)) for g in per_block]).mean(dim=0)
            maps.append([relevance[:, prefix:].reshape(relevance.shape[0], *grid)])
        return maps

    def _grid(self, keys: int, size) -> tuple[int, tuple[int, int]]:
        prefix = prefix_tokens(self.model) or 0
        if len(size) != 2:
            raise OptionError(f"{self.name} explains (B, C, H, W) images, got {len(size)} spatial axes")
        grid = model_grid(self.model, size)
        if grid is None or grid[0] * grid[1] != keys - prefix:
            grid = patch_grid(size, keys - prefix)
        if grid is None:
            raise LayerError(f"{self.name}: {keys} attention keys less {prefix} prefix tokens make no patch grid "
                             f"for a {tuple(size)} input")
        return prefix, grid


# ---------------------------------------------------------------------------------------- model families


class _Timm:
    """timm VisionTransformer: ``blocks[i].attn`` computes softmax(q·kᵀ) then ``attn_drop`` (the
    probabilities A pass through it) unless ``fused_attn``."""

    @staticmethod
    def matches(model: nn.Module) -> bool:
        blocks = getattr(model, "blocks", None)
        return (isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) > 0
                and all(isinstance(getattr(getattr(b, "attn", None), "attn_drop", None), nn.Module) for b in blocks)
                and callable(getattr(model, "forward_head", None)) and isinstance(getattr(model, "norm", None),
                                                                                  nn.Module))

    @staticmethod
    def blocks(model: nn.Module) -> list[nn.Module]:
        return list(model.blocks)

    @staticmethod
    @contextlib.contextmanager
    def attention_hooks(block: nn.Module, keep: Callable[[torch.Tensor], torch.Tensor]):
        attn = block.attn
        fused = getattr(attn, "fused_attn", None)
        handle = attn.attn_drop.register_forward_hook(lambda module, inputs, output: keep(output))
        try:
            if fused is not None:
                attn.fused_attn = False
            yield
        finally:
            handle.remove()
            if fused is not None:
                attn.fused_attn = fused

    @staticmethod
    def head(model: nn.Module, tokens: torch.Tensor, pooling: str) -> torch.Tensor:
        if pooling == "model":
            return model.forward_head(model.norm(tokens))
        pooled = model.fc_norm(model.norm(tokens.mean(dim=1)))
        return model.head(model.head_drop(pooled) if hasattr(model, "head_drop") else pooled)


class _Torchvision:
    """torchvision VisionTransformer: ``encoder.layers[i].self_attention`` is an ``nn.MultiheadAttention``
    asked for no weights, whose fused kernel never forms them; for the call it runs as its own formula
    (q, k, v projections, A = softmax(q kᵀ / √d) per head, A·V, the output projection), A kept on the
    score's path, the attention computed once."""

    @staticmethod
    def matches(model: nn.Module) -> bool:
        layers = getattr(getattr(model, "encoder", None), "layers", None)
        return (isinstance(layers, (nn.Sequential, nn.ModuleList)) and len(layers) > 0
                and all(isinstance(getattr(b, "self_attention", None), nn.MultiheadAttention)
                        and b.self_attention.batch_first and b.self_attention._qkv_same_embed_dim
                        and b.self_attention.bias_k is None and not b.self_attention.add_zero_attn for b in layers)
                and isinstance(getattr(model, "heads", None), nn.Module))

    @staticmethod
    def blocks(model: nn.Module) -> list[nn.Module]:
        return list(model.encoder.layers)

    @staticmethod
    @contextlib.contextmanager
    def attention_hooks(block: nn.Module, keep: Callable[[torch.Tensor], torch.Tensor]):
        mha: nn.MultiheadAttention = block.self_attention

        def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                    average_attn_weights=True, is_causal=False):
            if key_padding_mask is not None or attn_mask is not None or is_causal:
                raise LayerError("legrad reads unmasked self-attention; this block's attention has a mask")
            b, n, e = query.shape
            heads = mha.num_heads
            bias = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
            q, k, v = (F.linear(t, w, c).reshape(b, -1, heads, e // heads).transpose(1, 2)
                       for t, w, c in zip((query, key, value), mha.in_proj_weight.chunk(3), bias))
            probabilities = keep(((q * (e // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1))
            if mha.training and mha.dropout > 0:
                probabilities = F.dropout(probabilities, mha.dropout)
            out = mha.out_proj((probabilities @ v).transpose(1, 2).reshape(b, n, e))
            weights = (probabilities.mean(dim=1) if average_attn_weights else probabilities) if need_weights else None
            return out, weights

        if "legrad_forward" in vars(mha):
            raise LayerError("legrad: one attention module is used by two blocks; give each block its own")
        own = vars(mha).get("forward")  # a forward the user set on this module, put back after the call
        mha.forward = mha.legrad_forward = forward  # this module only, for the call
        try:
            yield
        finally:
            del mha.legrad_forward
            if own is None:
                del mha.forward
            else:
                mha.forward = own

    @staticmethod
    def head(model: nn.Module, tokens: torch.Tensor, pooling: str) -> torch.Tensor:
        if pooling == "model":
            return model.heads(model.encoder.ln(tokens)[:, 0])
        return model.heads(model.encoder.ln(tokens.mean(dim=1)))


def _family(model: nn.Module):
    for family in (_Timm, _Torchvision):
        if family.matches(model):
            return family
    return None


def _refusal(model: nn.Module) -> str:
    return (f"legrad needs a vision transformer's attention blocks (timm's blocks[i].attn or torchvision's "
            f"encoder.layers[i].self_attention); {type(model).__name__} has none")

"""The official JAX release (google-research/vision_transformer `.npz`) -> vitkit.

Flax stores Dense kernels as (in, out), attention projections per head as (D, heads, head_dim)
and (heads, head_dim, D), and the patch convolution as (p, p, C, D); each is reshaped and
transposed to PyTorch's (out, in) layout here. The number of heads is read off the query kernel.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.config import ViTConfig
from vitkit.layers.pos_embed import square_grid

BLOCK = "Transformer/encoderblock_{i}/"


def looks_like_jax(keys: list[str]) -> bool:
    return "embedding/kernel" in keys and any(k.startswith("Transformer/") for k in keys)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def import_npz(arrays: dict[str, np.ndarray]) -> Imported:
    if not looks_like_jax(list(arrays)):
        raise CheckpointError("not an official ViT .npz: no 'embedding/kernel' and 'Transformer/...' arrays")
    hybrid = [k for k in arrays if k.startswith(("block", "conv_root", "gn_root"))]
    if hybrid:
        raise CheckpointError("hybrid (ResNet + ViT) .npz checkpoints are not supported yet")
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in arrays:
            raise CheckpointError(f"official .npz lacks array {key!r} (truncated or another layout?)")
        used.add(key)
        return arrays[key]

    state: dict[str, torch.Tensor] = {}
    kernel = take("embedding/kernel")  # (p, p, C, D)
    state["patch_embed.proj.weight"] = _t(kernel.transpose(3, 2, 0, 1))
    state["patch_embed.proj.bias"] = _t(take("embedding/bias"))
    has_cls = "cls" in arrays
    if has_cls:
        state["cls_token"] = _t(take("cls"))
    state["pos_embed"] = _t(take("Transformer/posembed_input/pos_embedding"))
    depth = len({m.group(1) for k in arrays if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
    width = kernel.shape[-1]
    heads = arrays[BLOCK.format(i=0) + "MultiHeadDotProductAttention_1/query/kernel"].shape[1]
    for i in range(depth):
        b, ours = BLOCK.format(i=i), f"blocks.{i}."
        for j, norm in ((0, "norm1"), (2, "norm2")):
            state[ours + norm + ".weight"] = _t(take(f"{b}LayerNorm_{j}/scale"))
            state[ours + norm + ".bias"] = _t(take(f"{b}LayerNorm_{j}/bias"))
        att = b + "MultiHeadDotProductAttention_1/"
        # (D, heads, head_dim) -> (heads*head_dim, D) rows in q, k, v order
        state[ours + "attn.qkv.weight"] = torch.cat(
            [_t(take(f"{att}{n}/kernel").reshape(width, -1).T) for n in ("query", "key", "value")])
        state[ours + "attn.qkv.bias"] = torch.cat(
            [_t(take(f"{att}{n}/bias").reshape(-1)) for n in ("query", "key", "value")])
        state[ours + "attn.proj.weight"] = _t(take(att + "out/kernel").reshape(-1, width).T)
        state[ours + "attn.proj.bias"] = _t(take(att + "out/bias"))
        for j, fc in ((0, "fc1"), (1, "fc2")):
            state[f"{ours}mlp.{fc}.weight"] = _t(take(f"{b}MlpBlock_3/Dense_{j}/kernel").T)
            state[f"{ours}mlp.{fc}.bias"] = _t(take(f"{b}MlpBlock_3/Dense_{j}/bias"))
    state["norm.weight"] = _t(take("Transformer/encoder_norm/scale"))
    state["norm.bias"] = _t(take("Transformer/encoder_norm/bias"))
    if "pre_logits/kernel" in arrays:
        state["pre_logits.fc.weight"] = _t(take("pre_logits/kernel").T)
        state["pre_logits.fc.bias"] = _t(take("pre_logits/bias"))
    if "head/kernel" in arrays:
        state["head.weight"] = _t(take("head/kernel").T)
        state["head.bias"] = _t(take("head/bias"))
    unused = sorted(set(arrays) - used)
    if unused:
        raise CheckpointError(f"official .npz has arrays vitkit does not understand: {', '.join(unused[:20])}")
    patch = kernel.shape[0]
    grid = square_grid(state["pos_embed"].shape[1] - (1 if has_cls else 0))
    config = ViTConfig(
        img_size=(grid[0] * patch, grid[1] * patch), patch_size=patch, in_chans=kernel.shape[2],
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        embed_dim=width, depth=depth, num_heads=heads,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0], pool="cls" if has_cls else "gap",
        representation_size=state["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in state else None,
        norm_eps=1e-6, gelu="tanh", name="jax-vit",  # the JAX code's nn.gelu is the tanh form
    )
    return Imported(config, state, "jax-npz")

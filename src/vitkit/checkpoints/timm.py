"""timm state dicts -> vitkit: `VisionTransformer` (plain and hybrid) and BiT `ResNetV2`.

vitkit's parameter names follow timm's layout, so the import is a check plus config inference
from tensor shapes; the number of heads (not stored in the weights) comes from the zoo's table for
that width, from a timm model name in the file name, or from a `num_heads=` override. A hybrid's
trunk is timm's `_resnetv2` backbone: post-activation blocks, TF 'same' padding and weight-
standardisation epsilon 1e-8 (timm before 0.5 used 1e-6: load with `backbone={"ws_eps": 1e-6}`).
"""

from __future__ import annotations

import re

import torch

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.checkpoints.trunk import infer_trunk
from vitkit.config import BackboneConfig, ResNetConfig, ViTConfig
from vitkit.layers.pos_embed import square_grid
from vitkit.variants import heads_for_width

UNSUPPORTED = {
    "fc_norm.weight": "a LayerNorm after average pooling (fc_norm)",
    "reg_token": "register tokens",
    "norm_pre.weight": "a pre-encoder LayerNorm (CLIP style)",
    "blocks.0.ls1.gamma": "LayerScale",
    "blocks.0.attn.q_norm.weight": "QK normalisation",
    "attn_pool.latent": "attention pooling (MAP head)",
}
TIMM_SIZES = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}


def looks_like_timm(keys: list[str]) -> bool:
    return "patch_embed.proj.weight" in keys and any(k.startswith("blocks.0.") for k in keys)


def heads_from_filename(name: str) -> int | None:
    m = re.search(r"vit_(tiny|small|base|large|huge)_(?:patch|r)", name)
    return TIMM_SIZES[m.group(1)] if m else None


def import_timm(state: dict[str, torch.Tensor], filename: str = "", num_heads: int | None = None,
                num_groups: int | None = None) -> Imported:
    found = [why for key, why in UNSUPPORTED.items() if key in state]
    if found:
        raise CheckpointError(f"this timm ViT uses features vitkit does not implement: {', '.join(found)}")
    proj = state["patch_embed.proj.weight"]  # (D, C, p, p); C: the trunk's channels for a hybrid
    width, chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    backbone = None
    if "patch_embed.backbone.stem.conv.weight" in state:  # hybrid
        backbone = BackboneConfig(padding="same", **infer_trunk(state, "patch_embed.backbone.", num_groups))
        chans = state["patch_embed.backbone.stem.conv.weight"].shape[1]
    has_cls = "cls_token" in state
    prefix = 1 if has_cls else 0
    pos = state.get("pos_embed")
    if pos is not None:
        grid = square_grid(pos.shape[1] - prefix)
    else:
        raise CheckpointError("timm checkpoint has no pos_embed; only learned position embeddings are supported")
    pixels_per_token = patch * (backbone.reduction if backbone else 1)
    heads = num_heads or heads_from_filename(filename) or heads_for_width(width)
    if heads is None:
        raise CheckpointError(f"cannot infer num_heads for width {width}; pass num_heads=... to load_model")
    head = state.get("head.weight")
    pre = state.get("pre_logits.fc.weight")
    config = ViTConfig(
        img_size=(grid[0] * pixels_per_token, grid[1] * pixels_per_token), patch_size=patch, in_chans=chans,
        num_classes=0 if head is None else head.shape[0], embed_dim=width,
        depth=len({k.split(".")[1] for k in state if k.startswith("blocks.")}), num_heads=heads,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0], pool="cls" if has_cls else "gap",
        representation_size=None if pre is None else pre.shape[0], norm_eps=1e-6,
        qkv_bias="blocks.0.attn.qkv.bias" in state, backbone=backbone,
        name="timm-vit-hybrid" if backbone else "timm-vit",
    )
    return Imported(config, dict(state), "timm")


# ---- BiT: timm `ResNetV2` (resnetv2_50x1_bit, ...) ------------------------------------------
def looks_like_timm_resnet(keys: list[str]) -> bool:
    return "stem.conv.weight" in keys and any(k.startswith("stages.0.blocks.0.") for k in keys)


def import_timm_resnet(state: dict[str, torch.Tensor], num_groups: int | None = None) -> Imported:
    """timm's BiT layout is vitkit's, except a 1x1-convolution head (`head.fc`) for our linear one.

    BiT models use PyTorch padding; post-activation trunks are taken to be hybrid-style ('same').
    """
    state = dict(state)
    fc_w, fc_b = state.pop("head.fc.weight", None), state.pop("head.fc.bias", None)
    if fc_w is not None:
        state["head.weight"] = fc_w.reshape(fc_w.shape[0], -1)  # (classes, C, 1, 1) -> (classes, C)
        if fc_b is not None:
            state["head.bias"] = fc_b
    trunk = infer_trunk(state, num_groups=num_groups)
    head = state.get("head.weight")
    config = ResNetConfig(
        padding="symmetric" if trunk["preact"] else "same", in_chans=state["stem.conv.weight"].shape[1],
        num_classes=0 if head is None else head.shape[0], name="timm-resnetv2", **trunk)
    return Imported(config, state, "timm")

"""The model zoo as data: tables of sizes, one name parser, `create_model` and `list_models`.

Three families, as in the paper's comparisons (Figures 3-5):
  - ViT: `vit_{ti,s,b,l,h}{32,16,14,8,4}` (paper Table 1 plus DeiT's Ti and S).
  - hybrid ViT: `vit_r{26,50}_{size}{16,32}`: a ResNet trunk whose feature map is the token grid
    (patch size 1 on it). `/32`: the output of stage 4 of the ResNet; `/16`: stage 4 removed and
    its blocks moved to stage 3 (the paper's two variants; /16 gives a 4x longer sequence).
  - BiT ResNet-v2: `bit_r{26,50,101,152}x{1,2,3,4}` (`bit_r50` means x1).
Images of at most SMALL_STEM_MAX pixels a side get the small stem (no early downsampling) unless
`stem=` is given, so CIFAR-size inputs keep a useful feature map.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from torch import nn

from vitkit.config import (BackboneConfig, ModelConfig, ResNetConfig, ViTConfig, as_pair,
                           check_field_names, field_names)
from vitkit.model import VisionTransformer


class Width(NamedTuple):
    embed_dim: int
    depth: int
    num_heads: int


# Paper Table 1, plus the DeiT sizes Ti and S. MLP width is always 4x.
WIDTHS: dict[str, Width] = {
    "ti": Width(192, 12, 3),
    "s": Width(384, 12, 6),
    "b": Width(768, 12, 12),
    "l": Width(1024, 24, 16),
    "h": Width(1280, 32, 16),
}
PATCH_SIZES = (32, 16, 14, 8, 4)
# Blocks per stage of the ResNet depths (BiT; R26 as in timm's hybrids).
RESNET_LAYERS: dict[int, tuple[int, ...]] = {
    26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BIT_WIDTHS = (1, 2, 3, 4)
HYBRID_DEPTHS = (26, 50)
HYBRID_STRIDES = (16, 32)
SMALL_STEM_MAX = 64  # pixels: images this small get the stride-1 stem

NAME_PATTERN = re.compile(r"^vit_(ti|s|b|l|h)(\d+)$")
HYBRID_PATTERN = re.compile(r"^vit_r(\d+)_(ti|s|b|l|h)(\d+)$")
BIT_PATTERN = re.compile(r"^bit_r(\d+)(?:x(\d+))?$")
FAMILIES = ("vit", "hybrid", "bit")


def heads_for_width(embed_dim: int) -> int | None:
    """Number of heads the zoo uses at this width, for checkpoints that do not store it."""
    for w in WIDTHS.values():
        if w.embed_dim == embed_dim:
            return w.num_heads
    return None


def list_models(family: str | None = None) -> list[str]:
    """Zoo names, ViTs first (smallest width first), then hybrids, then BiT ResNets.

    `family`: "vit", "hybrid" or "bit" for one family only.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose from {FAMILIES}")
    names = {
        "vit": [f"vit_{size}{patch}" for size in WIDTHS for patch in PATCH_SIZES],
        "hybrid": [f"vit_r{d}_{size}{s}" for d in HYBRID_DEPTHS for size in WIDTHS for s in HYBRID_STRIDES],
        "bit": [f"bit_r{d}x{w}" for d in RESNET_LAYERS for w in BIT_WIDTHS],
    }
    return [n for fam in FAMILIES if family in (None, fam) for n in names[fam]]


def model_family(name: str) -> str:
    """'vit', 'hybrid' or 'bit' for a zoo name (any accepted spelling)."""
    key = normalise_name(name)
    if BIT_PATTERN.match(key):
        return "bit"
    return "hybrid" if HYBRID_PATTERN.match(key) else "vit"


def config_fields(name: str) -> set[str]:
    """The config field names (override names) of a zoo name's family."""
    return set(field_names(ResNetConfig if model_family(name) == "bit" else ViTConfig))


def normalise_name(name: str) -> str:
    """'B/16' -> 'vit_b16', 'R50+ViT-B/16' -> 'vit_r50_b16', 'BiT-M-R50x1' -> 'bit_r50x1'."""
    key = name.lower().replace("/", "").replace("-", "").replace(" ", "")
    m = re.match(r"^r(\d+)\+vit_?(\w+)$", key)
    if m:
        return f"vit_r{m.group(1)}_{m.group(2)}"
    m = re.match(r"^bit_?[sml]?_?(r\d+(?:x\d+)?)$", key)
    if m:
        return f"bit_{m.group(1)}"
    return key if key.startswith("vit_") else "vit_" + key


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")


def _stem_for(overrides: dict[str, Any]) -> str:
    """The small stem for images of CIFAR size, the standard one otherwise."""
    h, w = as_pair(overrides.get("img_size", 224))
    return "small" if max(h, w) <= SMALL_STEM_MAX else "standard"


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of a zoo variant ('vit_b16', 'B/16', 'vit_r50_b16', 'bit_r50x1') with fields overridden.

    A hybrid's trunk is set with `backbone=` (a dict of `BackboneConfig` fields, merged into the
    zoo's); a BiT model takes `ResNetConfig` fields directly (`width=3`, `stem="small"`, ...).
    """
    key = normalise_name(name)
    m = BIT_PATTERN.match(key)
    if m:
        return _bit_config(name, int(m.group(1)), int(m.group(2) or 1), overrides)
    m = HYBRID_PATTERN.match(key)
    if m:
        return _hybrid_config(name, int(m.group(1)), m.group(2), int(m.group(3)), overrides)
    m = NAME_PATTERN.match(key)
    if not m or m.group(1) not in WIDTHS:
        raise _unknown(name)
    return _vit_config(m.group(1), overrides, name=f"vit_{m.group(1)}{m.group(2)}",
                       patch_size=int(m.group(2)))


def _vit_config(size: str, overrides: dict[str, Any], **fields: Any) -> ViTConfig:
    w = WIDTHS[size]
    check_field_names(overrides)
    fields.update(embed_dim=w.embed_dim, depth=w.depth, num_heads=w.num_heads, mlp_dim=4 * w.embed_dim)
    if "embed_dim" in overrides and "mlp_dim" not in overrides:
        fields["mlp_dim"] = 4 * overrides["embed_dim"]  # keep the MLP ratio on a width override
    fields.update(overrides)
    return ViTConfig(**fields)


def _hybrid_config(name: str, depth: int, size: str, stride: int, overrides: dict[str, Any]) -> ViTConfig:
    if depth not in HYBRID_DEPTHS or size not in WIDTHS or stride not in HYBRID_STRIDES:
        raise _unknown(name)
    layers = RESNET_LAYERS[depth]
    if stride == 16:  # stage 4 removed, its blocks moved to stage 3: a 4x longer sequence
        layers = (*layers[:2], layers[2] + layers[3])
    trunk: dict[str, Any] = dict(layers=layers, stem=_stem_for(overrides), padding="same", preact=False)
    overrides = dict(overrides)
    backbone = overrides.pop("backbone", None)
    if isinstance(backbone, BackboneConfig):
        trunk = backbone.to_dict()
    elif backbone is not None:
        trunk.update(backbone)  # e.g. backbone={"width": 2} or {"stem": "standard"}
    return _vit_config(size, overrides, name=f"vit_r{depth}_{size}{stride}", patch_size=1,
                       backbone=BackboneConfig.from_dict(trunk))


def _bit_config(name: str, depth: int, width: int, overrides: dict[str, Any]) -> ResNetConfig:
    if depth not in RESNET_LAYERS:
        raise _unknown(name)
    check_field_names(overrides, ResNetConfig)
    fields: dict[str, Any] = dict(name=f"bit_r{depth}x{width}", layers=RESNET_LAYERS[depth], width=width,
                                  stem=_stem_for(overrides))
    fields.update(overrides)
    return ResNetConfig(**fields)


def model_from_config(config: ModelConfig) -> nn.Module:
    """A freshly initialised model of the family the config describes."""
    if isinstance(config, ResNetConfig):
        from vitkit.resnet import ResNetV2

        return ResNetV2(config)
    return VisionTransformer(config)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """A freshly initialised zoo model, e.g. `create_model("vit_b16", num_classes=10, img_size=32)`.

    Returns a `VisionTransformer` (ViT and hybrid names) or a `ResNetV2` (`bit_*` names).
    """
    return model_from_config(model_config(name, **overrides))

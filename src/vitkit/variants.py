"""The model zoo as data: one table of widths, one name parser, `create_model` and `list_models`."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from vitkit.config import ViTConfig, check_field_names
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
NAME_PATTERN = re.compile(r"^vit_(ti|s|b|l|h)(\d+)$")


def heads_for_width(embed_dim: int) -> int | None:
    """Number of heads the zoo uses at this width, for checkpoints that do not store it."""
    for w in WIDTHS.values():
        if w.embed_dim == embed_dim:
            return w.num_heads
    return None


def list_models() -> list[str]:
    """All zoo names, smallest width first, e.g. ['vit_ti32', 'vit_ti16', ...]."""
    return [f"vit_{size}{patch}" for size in WIDTHS for patch in PATCH_SIZES]


def model_config(name: str, **overrides: Any) -> ViTConfig:
    """The config of a zoo variant ('vit_b16', 'B/16' also accepted) with fields overridden."""
    key = name.lower().replace("/", "").replace("-", "")
    if not key.startswith("vit_"):
        key = "vit_" + key
    m = NAME_PATTERN.match(key)
    if not m or m.group(1) not in WIDTHS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    size, patch = m.group(1), int(m.group(2))
    w = WIDTHS[size]
    check_field_names(overrides)
    fields: dict[str, Any] = dict(
        name=f"vit_{size}{patch}", patch_size=patch, embed_dim=w.embed_dim, depth=w.depth,
        num_heads=w.num_heads, mlp_dim=4 * w.embed_dim,
    )
    if "embed_dim" in overrides and "mlp_dim" not in overrides:
        fields["mlp_dim"] = 4 * overrides["embed_dim"]  # keep the MLP ratio on a width override
    fields.update(overrides)
    return ViTConfig(**fields)


def create_model(name: str, **overrides: Any) -> VisionTransformer:
    """A freshly initialised zoo model, e.g. `create_model("vit_b16", num_classes=10, img_size=32)`."""
    return VisionTransformer(model_config(name, **overrides))

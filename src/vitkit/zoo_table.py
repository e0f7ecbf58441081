"""The zoo as a table of sizes: parameters and counted forward GFLOPs at a resolution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vitkit.flops import count_forward_flops
from vitkit.model import VisionTransformer
from vitkit.variants import list_models, model_config


@dataclass
class ZooRow:
    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    img_size: int
    tokens: int
    params: int
    gflops: float

    def to_dict(self) -> dict:
        return asdict(self)


def zoo_rows(img_size: int = 224, num_classes: int = 1000, names: list[str] | None = None) -> list[ZooRow]:
    """One row per model; built on the meta device, so even ViT-H costs nothing."""
    rows = []
    for name in names or list_models():
        config = model_config(name, img_size=img_size, num_classes=num_classes)
        with torch.device("meta"):
            model = VisionTransformer(config)
        rows.append(ZooRow(name, config.embed_dim, config.depth, config.num_heads, config.patch_size,
                           img_size, model.grid[0] * model.grid[1] + config.num_prefix_tokens,
                           model.num_params(), count_forward_flops(config) / 1e9))
    return rows

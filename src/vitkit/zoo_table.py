"""The zoo as a table of sizes: parameters and counted forward GFLOPs at a resolution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from vitkit.config import BackboneConfig, ResNetConfig
from vitkit.flops import count_module_flops
from vitkit.variants import list_models, model_config, model_family, model_from_config


@dataclass
class ZooRow:
    name: str
    family: str  # "vit", "hybrid" or "bit"
    embed_dim: int | None  # Transformer width (None for BiT)
    depth: int | None  # Transformer blocks (None for BiT)
    num_heads: int | None
    patch_size: int | None  # on the image (ViT) or on the ResNet feature map (hybrid)
    img_size: int
    tokens: int | None  # sequence length, prefix tokens included
    resnet_depth: int | None  # 26, 50, 101, 152: the ResNet's layer count (BiT, hybrid trunk)
    resnet_width: int | None  # BiT width multiplier
    feature_stride: int | None  # pixels per position of the trunk's output (hybrid, BiT)
    params: int
    gflops: float

    def to_dict(self) -> dict:
        return asdict(self)


def resnet_depth(trunk: BackboneConfig) -> int:
    """Conventional ResNet depth: 3 convolutions per bottleneck, plus the stem and the head.

    A hybrid /16 trunk with stage 4 folded into stage 3 keeps the depth of the ResNet it came from.
    """
    return 3 * sum(trunk.layers) + 2


def zoo_rows(img_size: int = 224, num_classes: int = 1000, names: list[str] | None = None) -> list[ZooRow]:
    """One row per model; built on the meta device, so even ViT-H costs nothing."""
    rows = []
    for name in names or list_models():
        config = model_config(name, img_size=img_size, num_classes=num_classes)
        with torch.device("meta"):
            model = model_from_config(config)
            example = torch.empty(1, config.in_chans, *config.img_size)
        params, gflops = model.num_params(), count_module_flops(model, example) / 1e9
        if isinstance(config, ResNetConfig):
            rows.append(ZooRow(name, "bit", None, None, None, None, img_size, None, resnet_depth(config),
                               config.width, config.reduction, params, gflops))
            continue
        gh, gw = config.token_grid()
        trunk = config.backbone
        rows.append(ZooRow(
            name, model_family(name), config.embed_dim, config.depth, config.num_heads, config.patch_size,
            img_size, gh * gw + config.num_prefix_tokens, resnet_depth(trunk) if trunk else None,
            trunk.width if trunk else None, trunk.reduction if trunk else None, params, gflops))
    return rows

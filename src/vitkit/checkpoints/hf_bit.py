"""Hugging Face `BitForImageClassification` / `BitModel` -> vitkit `ResNetV2`.

The layouts differ only in names (`bit.encoder.stages.i.layers.j` vs `stages.i.blocks.j`), and the
head (`classifier.1`). transformers builds two kinds from its config: BiT proper (pre-activation,
PyTorch padding: `layer_type="preactivation"`, `global_padding=None`) and the hybrid ViT's trunk
(`layer_type="bottleneck"`, `global_padding="SAME"`, dynamic stem padding); both import. Other
combinations pad in ways vitkit does not reproduce and are refused with a message.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.checkpoints.trunk import infer_trunk
from vitkit.config import ResNetConfig, round_channels

# (HF name, vitkit name); a `BitModel` saved on its own has no "bit." prefix.
RENAMES = [
    (re.compile(r"^(?:bit\.)?embedder\.convolution\."), "stem.conv."),
    (re.compile(r"^(?:bit\.)?embedder\.norm\."), "stem.norm."),
    (re.compile(r"^(?:bit\.)?encoder\.stages\.(\d+)\.layers\.(\d+)\."), r"stages.\1.blocks.\2."),
    (re.compile(r"^(?:bit\.)?norm\."), "norm."),
    (re.compile(r"^classifier\.1\."), "head."),
]


def looks_like_hf_bit(keys: list[str]) -> bool:
    return any(k.removeprefix("bit.").startswith("embedder.convolution.") for k in keys)


def convert_hf_bit_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF tensor names -> vitkit names; unknown names are kept so the strict load reports them."""
    out = {}
    for name, tensor in state.items():
        for pattern, target in RENAMES:
            if pattern.match(name):
                name = pattern.sub(target, name)
                break
        out[name] = tensor
    return out


def config_from_hf_bit(hf: dict[str, Any], state: dict[str, torch.Tensor]) -> ResNetConfig:
    """vitkit config equivalent to a Hugging Face BitConfig dict, or a CheckpointError saying why not."""
    layer_type = hf.get("layer_type", "preactivation")
    padding = (hf.get("global_padding") or "").upper() or None
    dynamic = bool(hf.get("embedding_dynamic_padding", False))
    if (layer_type, padding, dynamic) == ("preactivation", None, False):
        preact, mode = True, "symmetric"
    elif (layer_type, padding, dynamic) == ("bottleneck", "SAME", True):
        preact, mode = False, "same"
    else:
        raise CheckpointError(
            f"Hugging Face BiT with layer_type={layer_type!r}, global_padding={hf.get('global_padding')!r}, "
            f"embedding_dynamic_padding={dynamic} is not supported; vitkit imports BiT (preactivation, None, "
            "False) and the hybrid ViT trunk (bottleneck, 'SAME', True)")
    if hf.get("hidden_act", "relu") != "relu":
        raise CheckpointError(f"Hugging Face BiT with hidden_act={hf['hidden_act']!r} is not supported (only 'relu')")
    if hf.get("output_stride", 32) != 32:
        raise CheckpointError(f"output_stride={hf['output_stride']} (dilated stages) is not supported; only 32")
    factor = hf.get("width_factor", 1)
    stages = [round_channels(h * factor) for h in hf.get("hidden_sizes", (256, 512, 1024, 2048))]
    head = state.get("head.weight")
    return ResNetConfig(
        layers=tuple(hf.get("depths", (3, 4, 6, 3))), width=1, stem_width=hf.get("embedding_size", 64),
        stage_widths=tuple(stages), stem="standard", padding=mode, preact=preact,
        num_groups=hf.get("num_groups", 32), drop_path=hf.get("drop_path_rate", 0.0),
        img_size=224, in_chans=hf.get("num_channels", 3), num_classes=0 if head is None else head.shape[0],
        name="hf-bit")


def config_from_hf_bit_state(state: dict[str, torch.Tensor], num_groups: int | None = None) -> dict[str, Any]:
    """An HF-style config dict inferred from (converted) tensor shapes, for a bare state dict."""
    trunk = infer_trunk(state, num_groups=num_groups)
    preact = trunk["preact"]
    widths = trunk["stage_widths"] or [round_channels(256 * 2**i * trunk["width"]) for i in range(len(trunk["layers"]))]
    return dict(layer_type="preactivation" if preact else "bottleneck", global_padding=None if preact else "SAME",
                embedding_dynamic_padding=not preact, depths=list(trunk["layers"]), hidden_sizes=list(widths),
                embedding_size=round_channels(trunk["stem_width"] * trunk["width"]),
                num_channels=state["stem.conv.weight"].shape[1], num_groups=trunk["num_groups"])


def import_hf_bit(state: dict[str, torch.Tensor], hf_config: dict[str, Any] | None,
                  num_groups: int | None = None) -> Imported:
    ours = convert_hf_bit_state(state)
    if hf_config is None:
        hf_config = config_from_hf_bit_state(ours, num_groups)
    return Imported(config_from_hf_bit(hf_config, ours), ours, "hf-bit")

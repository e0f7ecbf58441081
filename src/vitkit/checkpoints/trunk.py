"""A ResNet trunk's architecture read back from its tensors (vitkit/timm names), for checkpoints
that carry no config: blocks per stage, widths, stem and block order. Padding, the weight-
standardisation epsilon and the number of GroupNorm groups leave no trace in the weights; callers
pass what the source used (GroupNorm: BiT's 32 unless `num_groups=` is given to `load_model`).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from vitkit.checkpoints.common import CheckpointError
from vitkit.config import round_channels

BLOCK_KEY = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.")


def infer_trunk(state: dict[str, torch.Tensor], prefix: str = "", num_groups: int | None = None) -> dict[str, Any]:
    """`BackboneConfig` fields implied by the tensors under `prefix` (e.g. 'patch_embed.backbone.')."""
    stem = state.get(f"{prefix}stem.conv.weight")  # (C, in, k, k)
    if stem is None:
        raise CheckpointError(f"no {prefix}stem.conv.weight: not a ResNet trunk")
    depths: dict[int, int] = {}
    for key in state:
        m = BLOCK_KEY.match(key.removeprefix(prefix)) if key.startswith(prefix) else None
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            depths[stage] = max(depths.get(stage, 0), block + 1)
    if not depths or sorted(depths) != list(range(len(depths))):
        raise CheckpointError(f"stages under {prefix or 'the top level'} are missing or not numbered 0..n-1")
    layers = tuple(depths[i] for i in range(len(depths)))
    stages = [int(state[f"{prefix}stages.{i}.blocks.0.conv3.weight"].shape[0]) for i in range(len(layers))]
    groups = num_groups or 32
    norms = {int(v.shape[0]) for k, v in state.items() if k.startswith(prefix) and ".norm" in k and v.ndim == 1}
    if any(n % groups for n in norms):
        raise CheckpointError(f"GroupNorm widths {sorted(norms)} do not split into {groups} groups; the number of "
                              "groups is not stored in the weights: pass num_groups=N to load_model")
    return dict(layers=layers, stem="standard" if stem.shape[-1] == 7 else "small", num_groups=groups,
                preact=f"{prefix}stem.norm.weight" not in state, **trunk_widths(stem.shape[0], stages))


def trunk_widths(stem: int, stages: list[int]) -> dict[str, Any]:
    """Width fields for these channel counts: a BiT multiplier when they are BiT's, else explicit."""
    for width in range(1, 9):
        standard = [round_channels(256 * 2**i * width) for i in range(len(stages))]
        if stem == round_channels(64 * width) and stages == standard:
            return dict(width=width, stem_width=64, stage_widths=None)
    return dict(width=1, stem_width=stem, stage_widths=tuple(stages))

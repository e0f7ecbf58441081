"""ResNet bottleneck blocks, stages and stems with Weight Standardisation and GroupNorm.

Two block orders: pre-activation (ResNet v2, He et al. 2016), as in BiT, and post-activation
(v1.5: the stride on the 3x3 convolution), as in the paper's hybrid ViT. Module names
(`stem.conv`, `stages.i.blocks.j.conv1`, `downsample.conv`) follow the layout timm and the
official checkpoints use, so converters only rename prefixes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from vitkit.config import BackboneConfig, Padding, bottleneck_channels
from vitkit.layers.block import DropPath
from vitkit.layers.std_conv import GroupNormAct, StdConv2d, StemPool


class Projection(nn.Module):
    """The shortcut of a stage's first block: 1x1 strided convolution (+ GroupNorm, post-act only)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, preact: bool, groups: int, padding: Padding,
                 eps: float) -> None:
        super().__init__()
        self.conv = StdConv2d(in_ch, out_ch, 1, stride, padding, eps)
        self.norm = nn.Identity() if preact else GroupNormAct(out_ch, groups, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class PreActBottleneck(nn.Module):
    """x + conv3(GN-ReLU(conv2(GN-ReLU(conv1(GN-ReLU(x)))))): norms before each convolution.

    The projection shortcut, when there is one, takes the normalised input, as in BiT.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, first: bool, groups: int, padding: Padding,
                 eps: float, drop_path: float) -> None:
        super().__init__()
        mid = bottleneck_channels(out_ch)
        self.downsample = Projection(in_ch, out_ch, stride, True, groups, padding, eps) if first else None
        self.norm1 = GroupNormAct(in_ch, groups)
        self.conv1 = StdConv2d(in_ch, mid, 1, 1, padding, eps)
        self.norm2 = GroupNormAct(mid, groups)
        self.conv2 = StdConv2d(mid, mid, 3, stride, padding, eps)
        self.norm3 = GroupNormAct(mid, groups)
        self.conv3 = StdConv2d(mid, out_ch, 1, 1, padding, eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        y = self.conv1(pre)
        y = self.conv2(self.norm2(y))
        y = self.conv3(self.norm3(y))
        return self.drop_path(y) + shortcut


class Bottleneck(nn.Module):
    """ReLU(shortcut + GN(conv3(GN-ReLU(conv2(GN-ReLU(conv1(x))))))): norms after each convolution."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, first: bool, groups: int, padding: Padding,
                 eps: float, drop_path: float) -> None:
        super().__init__()
        mid = bottleneck_channels(out_ch)
        self.downsample = Projection(in_ch, out_ch, stride, False, groups, padding, eps) if first else None
        self.conv1 = StdConv2d(in_ch, mid, 1, 1, padding, eps)
        self.norm1 = GroupNormAct(mid, groups)
        self.conv2 = StdConv2d(mid, mid, 3, stride, padding, eps)
        self.norm2 = GroupNormAct(mid, groups)
        self.conv3 = StdConv2d(mid, out_ch, 1, 1, padding, eps)
        self.norm3 = GroupNormAct(out_ch, groups, act=False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.norm1(self.conv1(x))
        y = self.norm2(self.conv2(y))
        y = self.norm3(self.conv3(y))
        return torch.relu(self.drop_path(y) + shortcut)


class ResNetStage(nn.Module):
    """`depth` blocks; the first changes the width (and the resolution, for stride 2)."""

    def __init__(self, in_ch: int, out_ch: int, depth: int, stride: int, c: BackboneConfig,
                 drop_rates: list[float]) -> None:
        super().__init__()
        block = PreActBottleneck if c.preact else Bottleneck
        self.blocks = nn.Sequential(*(
            block(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, i == 0, c.num_groups,
                  c.padding, c.ws_eps, drop_rates[i])
            for i in range(depth)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def make_stem(c: BackboneConfig, in_chans: int) -> nn.Sequential:
    """'standard': 7x7 stride-2 convolution then 3x3 stride-2 max pool (/4). 'small', for images of
    CIFAR size: one 3x3 stride-1 convolution and no pool, so 32x32 inputs keep their resolution.
    Post-activation trunks normalise the stem's output; pre-activation ones leave it to block 1."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if c.stem == "standard":
        layers["conv"] = StdConv2d(in_chans, c.stem_channels, 7, 2, c.padding, c.ws_eps)
    else:
        layers["conv"] = StdConv2d(in_chans, c.stem_channels, 3, 1, c.padding, c.ws_eps)
    if not c.preact:
        layers["norm"] = GroupNormAct(c.stem_channels, c.num_groups)
    if c.stem == "standard":
        layers["pool"] = StemPool(c.padding)
    return nn.Sequential(layers)


def make_stages(c: BackboneConfig) -> nn.Sequential:
    """The stages of a trunk: stride 1 for the first, 2 for the others; drop-path rising linearly
    from 0 at the first block to `drop_path` at the last."""
    total = sum(c.layers)
    rates = [c.drop_path * i / max(total - 1, 1) for i in range(total)]
    stages, in_ch, start = [], c.stem_channels, 0
    for i, (depth, out_ch) in enumerate(zip(c.layers, c.stage_channels)):
        stages.append(ResNetStage(in_ch, out_ch, depth, 1 if i == 0 else 2, c, rates[start:start + depth]))
        in_ch, start = out_ch, start + depth
    return nn.Sequential(*stages)

"""The hybrid's patch embedding (paper section 3.1): a ResNet's feature map is the input sequence.

The image goes through a ResNet trunk; the patches are taken from its (B, C, h, w) feature map,
usually of size 1x1 (the paper's "patches of spatial size 1x1"), and projected to D channels. The
rest of the ViT is unchanged. Names (`backbone.stem.conv`, `backbone.stages...`, `proj`) follow
timm's hybrid layout.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.config import BackboneConfig
from vitkit.layers.patch_embed import grid_size
from vitkit.resnet import ResNetTrunk


class HybridEmbed(nn.Module):
    """(B, C, H, W) image -> trunk -> (B, C', h, w) -> patches -> (B, N, D), N = grid_h * grid_w."""

    def __init__(self, backbone: BackboneConfig, in_chans: int, embed_dim: int, patch_size: int = 1,
                 stride: int | None = None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride or patch_size
        self.in_chans = in_chans
        self.backbone = ResNetTrunk(backbone, in_chans)
        self.proj = nn.Conv2d(backbone.out_channels, embed_dim, kernel_size=patch_size, stride=self.stride)
        self.as_matmul = False  # accepted for `vitkit.speed`; a hybrid's projection stays a convolution

    def grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Token rows and columns for an image of size hw: the patch grid of the feature map."""
        return grid_size(self.backbone.feature_size(hw), self.patch_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grid((x.shape[-2], x.shape[-1]))  # a clear error for an image too small for the trunk
        features = self.backbone(x)  # (B, C', h, w)
        x = self.proj(features)  # (B, D, gh, gw)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)

"""BiT ResNet-v2 (Kolesnikov et al. 2020), the paper's convolutional baseline, and the trunk its
hybrid ViT puts in front of the Transformer.

`ResNetTrunk` is stem -> stages (-> GroupNorm + ReLU for pre-activation trunks): a (B, C, h, w)
feature map. `ResNetV2` adds global average pooling and a linear head: the BiT classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from vitkit.layers.recompute import run_block

from vitkit.config import BackboneConfig, ResNetConfig
from vitkit.layers.bottleneck import make_stages, make_stem
from vitkit.layers.std_conv import GroupNormAct


class ResNetTrunk(nn.Module):
    """(B, C, H, W) images -> (B, out_channels, H / reduction, W / reduction) features."""

    def __init__(self, backbone: BackboneConfig, in_chans: int) -> None:
        super().__init__()
        self.backbone_config = backbone
        self.stem = make_stem(backbone, in_chans)
        self.stages = make_stages(backbone)
        # Pre-activation blocks leave their sum un-normalised: one last GroupNorm + ReLU.
        self.norm = GroupNormAct(backbone.out_channels, backbone.num_groups) if backbone.preact else nn.Identity()
        self.grad_checkpointing = False  # recompute each block's activations in backward
        self.in_chans = in_chans
        self.init_trunk()

    @torch.no_grad()
    def init_trunk(self) -> None:
        """He-normal convolutions (fan out), unit GroupNorm scales, zero shifts."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        return self.backbone_config.feature_size(hw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images of shape (batch, {self.in_chans}, height, width), got {tuple(x.shape)}")
        x = self.stem(x)
        for stage in self.stages:
            for block in stage.blocks:
                x = run_block(block, x, self.grad_checkpointing)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class ResNetV2(ResNetTrunk):
    """The BiT classifier: trunk -> global average pool -> linear head (zero-initialised)."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config, config.in_chans)
        self.config = config
        self.head = self._make_head(config.num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.config.out_channels, num_classes)
        nn.init.zeros_(head.weight)  # BiT fine-tunes from a zero head; training from scratch is unaffected
        nn.init.zeros_(head.bias)
        return head

    def reset_head(self, num_classes: int) -> None:
        """A fresh zero-initialised head for new classes."""
        self.config.class_names = None
        self.config.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = self._make_head(num_classes).to(device)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C): the mean over positions."""
        return features.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(features)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def no_weight_decay(self) -> set[str]:
        """GroupNorm scales and shifts and the head's bias."""
        return {n for n, p in self.named_parameters() if p.ndim <= 1}

    def save(self, path: str | Path) -> Path:
        """Write safetensors weights plus a JSON config; see `vitkit.checkpoints.native`."""
        from vitkit.checkpoints.native import save_model

        return save_model(self, path)

"""Activation (gradient) checkpointing of one block, shared by the ViT and the ResNet trunk."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_block(block: nn.Module, x: torch.Tensor, recompute: bool) -> torch.Tensor:
    """block(x), recomputing its activations in backward when `recompute` and a graph is built."""
    if recompute and block.training and torch.is_grad_enabled():
        return checkpoint(block, x, use_reentrant=False)
    return block(x)

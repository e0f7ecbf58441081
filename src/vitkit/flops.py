"""Counted forward FLOPs: run the model on the meta device under PyTorch's FLOP counter.

Nothing is guessed from formulas: every matmul, convolution and attention call the forward makes
is counted (2 FLOPs per multiply-add), on meta tensors so even ViT-H costs no memory or time.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitkit.config import ModelConfig


def count_forward_flops(config: ModelConfig, batch: int = 1, last_block_cls: bool = False) -> int:
    """FLOPs of one forward pass over `batch` images at the config's resolution (ViT, hybrid or ResNet).

    last_block_cls: count the forward that speed option's way, the last block on the class token only.
    """
    from vitkit.variants import model_from_config

    with torch.device("meta"):
        model = model_from_config(config)
        model.last_block_cls = last_block_cls
        x = torch.empty(batch, config.in_chans, *config.img_size)
    return count_module_flops(model, x)


def count_module_flops(model: torch.nn.Module, example: torch.Tensor, amp: torch.dtype | None = None) -> int:
    """FLOPs of `model(example)` for any module (meta or real tensors), under autocast to `amp` if
    given: pinned fused attention kernels refuse fp32, so count under the precision you run."""
    precision = torch.autocast(example.device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with FlopCounterMode(display=False) as counter, torch.no_grad(), precision:
        model(example)
    return int(counter.get_total_flops())

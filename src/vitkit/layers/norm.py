"""LayerNorm that keeps a low-precision residual stream low-precision.

Under autocast, `nn.LayerNorm` always returns float32, which doubles the bytes every following
element-wise op moves. This subclass returns the input's dtype for bf16/fp16 inputs (statistics
are still accumulated in float32 inside the kernel) and is identical to `nn.LayerNorm` for fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16):
            with torch.autocast(x.device.type, enabled=False):
                return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)
        return super().forward(x)

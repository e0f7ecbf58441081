"""LayerNorm that keeps a low-precision residual stream low-precision.

Under autocast, `nn.LayerNorm` always returns float32, which doubles the bytes every following
element-wise op moves. This subclass returns the input's dtype for bf16/fp16 inputs (statistics
are still accumulated in float32 inside the kernel) and is identical to `nn.LayerNorm` for fp32.

`normalize` and `fold_affine` serve the speed option `fold_norm`: the norm without its affine, and
the affine folded into the linear layer that follows,
    LN(x) W^T + b = xhat (W * gamma)^T + (b + W beta),    xhat = (x - mean) / std,
so the backward pass takes gamma's and beta's gradients from weight-sized tensors instead of summing
(tokens, width) activations over the tokens.
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

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std without the affine, in x's dtype as `forward` (autocast would make bf16 fp32)."""
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, eps=self.eps)


def fold_affine(norm: nn.LayerNorm, weight: torch.Tensor,
                bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of a linear layer (out, in) applied after `norm`, with norm's affine folded in.

    Computed in the parameters' dtype with autocast off: under autocast the GEMV weight @ beta would
    run in bf16 and round beta's share of the bias before it is added; the linear layer that takes
    the result casts it once, as it casts unfolded parameters.
    """
    with torch.autocast(weight.device.type, enabled=False):
        folded_bias = weight @ norm.bias  # (out,)
        return weight * norm.weight, folded_bias if bias is None else bias + folded_bias


def folded_parameters(layer: nn.Linear, norm: nn.LayerNorm | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """layer's (weight, bias), with norm's affine folded in (`fold_affine`) when a norm is given."""
    return (layer.weight, layer.bias) if norm is None else fold_affine(norm, layer.weight, layer.bias)

"""The QKV projection and the tile attention kernel as one autograd node (speed option `qkv_bias_sums`).

Why: the QKV projection's bias gradient is the column sum of dQKV, a (tokens, 3 x width) gradient that
the attention backward kernel has just written. Summed by Inductor (or by bias_grad's GEMV) it is
read back from memory once more: at the CIFAR-scale shape 77 MB per layer, at ViT-B/16's 232 MB. The
kernel holds those gradients in registers, so it also writes each program's column sums (a few KB per
image); the bias gradient is their sum. A single node is needed because autograd hands the QKV linear
only dQKV, not the sums beside it.

    forward:  qkv = x W^T + b;  out = attention(qkv)                  (the kernel: vitkit.layers.tile_attention)
    backward: dqkv, partials = attention backward(...)
              dW = dqkv^T x,  dx = dqkv W,  db = partials summed
"""

from __future__ import annotations

import torch

from vitkit.layers import tile_attention
from vitkit.layers.bias_grad import apply_on_rows
from vitkit.layers.linear_gelu import matmul_dtype


class _QkvTileAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, n_tokens: int, num_heads: int, scale: float):
        qkv = torch.addmm(bias, x, weight.t()).view(-1, n_tokens, weight.shape[0])
        out, lse = tile_attention.forward(qkv, num_heads, scale)
        ctx.save_for_backward(x, weight, qkv, out, lse)
        ctx.num_heads, ctx.scale = num_heads, scale
        return out.view(x.shape[0], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, qkv, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous().view(out.shape)
        grad_qkv, partials = tile_attention.backward_with_partials(qkv, out, grad_out, lse, ctx.num_heads, ctx.scale)
        grad_qkv = grad_qkv.view(x.shape[0], -1)
        grad_x = grad_qkv @ weight if ctx.needs_input_grad[0] else None
        grad_bias = partials.sum((0, 1)).to(grad_qkv.dtype)  # fp32 sums rounded once, as `sum` would
        return grad_x, grad_qkv.t() @ x, grad_bias, None, None, None


def applies(x: torch.Tensor, head_dim: int, bias: torch.Tensor | None, dropout_p: float) -> bool:
    """Whether this call can take the fused node: training the tile kernel's shapes, with a QKV bias."""
    return (tile_attention.available() and x.is_cuda and torch.is_grad_enabled() and bias is not None
            and dropout_p == 0.0 and matmul_dtype(x) in (torch.bfloat16, torch.float16)
            and tile_attention.shape_fits(x.shape[1], head_dim))


def qkv_tile_attention(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_heads: int,
                       scale: float) -> torch.Tensor:
    """tile_attention(x W^T + b) for x (B, N, D), W (3 D', D), b (3 D'): (B, N, D'), trainable.

    Under autocast x, W and b are cast to the autocast dtype first, as `F.linear` would.
    """
    return apply_on_rows(_QkvTileAttention, x, (weight, bias), weight.shape[0] // 3, x.shape[1], num_heads,
                         float(scale))

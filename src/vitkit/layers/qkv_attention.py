"""The QKV projection and the tile attention kernel as one autograd node (speed option `qkv_bias_sums`).

Why: the QKV projection's bias gradient is the column sum of dQKV, a (tokens, 3 x width) gradient
read back from memory once more after the attention backward kernel has written it (CIFAR-scale
model: 77 MB per layer; ViT-B/16: 232 MB). Two thirds of that sum are known without reading dQKV:

- the keys' bias gradient is exactly zero: a key bias adds q_i . b_k to every score of query i, a
  constant per softmax row, which the softmax removes;
- the values' bias gradient is the column sum of dO, the attention output's gradient: each output
  row is a convex combination of value rows (softmax rows sum to one), so b_v reaches it whole.

So only the queries' third of dQKV is summed, plus dO, which is a third of dQKV's size. A single node
is needed because autograd hands the QKV linear only dQKV, not dO.

    forward:  qkv = x W^T + b;  out = attention(qkv)        (the kernel: vitkit.layers.tile_attention)
    backward: dqkv = attention backward(...);  dW = dqkv^T x;  dx = dqkv W
              db = (column sums of dq, 0, column sums of dO)
"""

from __future__ import annotations

import torch

from vitkit.layers import tile_attention
from vitkit.layers.bias_grad import apply_on_rows, bias_gradient
from vitkit.layers.linear_gelu import matmul_dtype


class _QkvTileAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, n_tokens: int, num_heads: int, scale: float, column_sums: bool):
        qkv = torch.addmm(bias, x, weight.t()).view(-1, n_tokens, weight.shape[0])
        out, lse = tile_attention.forward(qkv, num_heads, scale)
        ctx.save_for_backward(x, weight, qkv, out, lse)
        ctx.num_heads, ctx.scale, ctx.column_sums = num_heads, scale, column_sums
        return out.view(x.shape[0], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, qkv, out, lse = ctx.saved_tensors
        grad_out = grad_out.contiguous().view(out.shape)
        grad_qkv = tile_attention.backward(qkv, out, grad_out, lse, ctx.num_heads, ctx.scale).view(x.shape[0], -1)
        grad_x = grad_qkv @ weight if ctx.needs_input_grad[0] else None
        width = out.shape[-1]
        grad_bias = torch.cat([bias_gradient(grad_qkv[:, :width], ctx.column_sums), grad_qkv.new_zeros(width),
                               bias_gradient(grad_out.reshape(-1, width), ctx.column_sums)])
        return grad_x, grad_qkv.t() @ x, grad_bias, None, None, None, None


def applies(x: torch.Tensor, head_dim: int, bias: torch.Tensor | None, dropout_p: float) -> bool:
    """Whether this call can take the fused node: training the tile kernel's shapes, with a QKV bias."""
    return (torch.is_grad_enabled() and bias is not None
            and tile_attention.applies(x, head_dim, dropout_p, dtype=matmul_dtype(x)))


def qkv_tile_attention(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_heads: int,
                       scale: float, column_sums: bool = False) -> torch.Tensor:
    """tile_attention(x W^T + b) for x (B, N, D), W (3 D', D), b (3 D'): (B, N, D'), trainable.

    Under autocast x, W and b are cast to the autocast dtype first, as `F.linear` would. column_sums:
    the two sums from vitkit.layers.bias_grad's GEMV (speed option bias_grad) rather than Inductor's.
    """
    return apply_on_rows(_QkvTileAttention, x, (weight, bias), weight.shape[0] // 3, x.shape[1], num_heads,
                         float(scale), column_sums)

"""Bias gradients out of the weight-gradient matmul (speed option `wgrad_bias`, with `fold_norm`).

A linear layer y = x W^T + b has the weight gradient grad^T x and the bias gradient grad^T 1, the
column sums of grad over every token. If x carries a block of ones after its K columns,

    x_ones = [x, 1 ... 1]  (tokens, K + 8),    grad^T x_ones = [grad^T x, grad^T 1 ... grad^T 1],

one matmul gives both. The bias gradient otherwise re-reads the (tokens, out) gradient: at ViT-B/16's
qkv and fc1 a cuBLAS GEMV with a fill, a memset and a split-K reduction (speed option bias_grad), or
Inductor's sum, 0.06-0.09 ms each; the wider weight-gradient matmul costs nothing measurable (H200:
qkv 0.250 ms against 0.282 for the plain matmul and 0.345 with the GEMV; docs/benchmarks.md
section 12). Eight columns rather than one keep each row 16-byte aligned for the tensor cores.

The ones are written where x is made: `append_ones(LayerNorm.normalize(x))` compiles to the norm's
kernel writing its rows K + 8 apart plus a small kernel for the ones. Every matmul then reads x_ones
whole, against the weight padded with zeros (`padded`): the forward, x_ones W_pad^T = x W^T; the input
gradient, grad W_pad, whose first K columns the norm's backward reads. (Reading a view of the first K
columns instead made Inductor copy it out: 41 us per layer input at ViT-B/16, as much as the GEMVs
cost.) So this applies to the linear layers that follow a norm (qkv and fc1) when the norms' affines
are folded into them (speed option fold_norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitkit.layers.bias_grad import apply_on_rows

PAD = 8  # the ones block: 8 bf16 columns, one 16-byte vector per row


def append_ones(x: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (..., K + PAD): x followed by PAD columns of ones."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], PAD)], dim=-1)


def padded(weight: torch.Tensor) -> torch.Tensor:
    """(out, K) -> (out, K + PAD): the weight with zeros against the ones, so x_ones is read whole."""
    return F.pad(weight, (0, PAD))


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_ones, weight, bias):
        weight_padded = padded(weight)
        ctx.save_for_backward(x_ones, weight_padded)
        ctx.has_bias = bias is not None
        return F.linear(x_ones, weight_padded, bias)

    @staticmethod
    def backward(ctx, grad):
        x_ones, weight_padded = ctx.saved_tensors
        grad = grad.contiguous()
        # x_ones' gradient, zeros against the ones; append_ones' backward reads its first K columns
        grad_x = grad @ weight_padded if ctx.needs_input_grad[0] else None
        k = weight_padded.shape[1] - PAD
        grad_weight, grad_bias = weight_and_bias_grads(grad, x_ones, k, ctx.has_bias)
        return grad_x, grad_weight, grad_bias


def weight_and_bias_grads(grad: torch.Tensor, x_ones: torch.Tensor, k: int,
                          has_bias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """grad (tokens, out), x_ones (tokens, k + PAD) -> (grad^T x (out, k), grad^T 1 (out,) or None)."""
    both = grad.t() @ x_ones  # (out, k + PAD): the weight gradient, then PAD copies of the bias gradient
    return both[:, :k], both[:, k] if has_bias else None


def linear(x_ones: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for x_ones = append_ones(x), bias gradient from the weight-gradient matmul."""
    if x_ones.shape[-1] != weight.shape[1] + PAD:
        raise ValueError(f"ones_column.linear wants x with {weight.shape[1]} + {PAD} columns for a weight of "
                         f"shape {tuple(weight.shape)}, got {tuple(x_ones.shape)}")
    return apply_on_rows(_Linear, x_ones, (weight, bias), weight.shape[0])

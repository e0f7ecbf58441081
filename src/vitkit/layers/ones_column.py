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
kernel writing its rows K + 8 apart plus a small kernel for the ones, and the forward matmul reads
x through a view of the first K columns. So this applies to the linear layers that follow a norm
(qkv and fc1) when the norms' affines are folded into them (speed option fold_norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitkit.layers.bias_grad import apply_on_rows

PAD = 8  # the ones block: 8 bf16 columns, one 16-byte vector per row


def append_ones(x: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (..., K + PAD): x followed by PAD columns of ones."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], PAD)], dim=-1)


def width(x_ones: torch.Tensor) -> int:
    """K, the columns of x in an `append_ones` tensor."""
    return x_ones.shape[-1] - PAD


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_ones, weight, bias):
        ctx.save_for_backward(x_ones, weight)
        ctx.has_bias = bias is not None
        x = x_ones[:, :weight.shape[1]]  # a view: the matmul reads rows K + PAD apart
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x_ones, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = pad_grad(grad @ weight) if ctx.needs_input_grad[0] else None
        grad_weight, grad_bias = weight_and_bias_grads(grad, x_ones, weight.shape[1], ctx.has_bias)
        return grad_x, grad_weight, grad_bias


def weight_and_bias_grads(grad: torch.Tensor, x_ones: torch.Tensor, k: int,
                          has_bias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """grad (tokens, out), x_ones (tokens, k + PAD) -> (grad^T x (out, k), grad^T 1 (out,) or None)."""
    if not has_bias:
        return grad.t() @ x_ones[:, :k], None
    both = grad.t() @ x_ones  # (out, k + PAD): the weight gradient, then PAD copies of the bias gradient
    return both[:, :k], both[:, k]


def pad_grad(grad_x: torch.Tensor) -> torch.Tensor:
    """The gradient of an `append_ones` tensor from that of its first K columns (the ones get zeros).

    Compiled, the padding is never written: its only reader is the slice that `append_ones`' backward
    takes, which Inductor folds into the kernel consuming the gradient.
    """
    return F.pad(grad_x, (0, PAD))


def linear(x_ones: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for x_ones = append_ones(x), bias gradient from the weight-gradient matmul."""
    if x_ones.shape[-1] != weight.shape[1] + PAD:
        raise ValueError(f"ones_column.linear wants x with {weight.shape[1]} + {PAD} columns for a weight of "
                         f"shape {tuple(weight.shape)}, got {tuple(x_ones.shape)}")
    return apply_on_rows(_Linear, x_ones, (weight, bias), weight.shape[0])

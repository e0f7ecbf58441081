"""Bias gradients at memory speed (speed option `bias_grad`).

`column_sum(g)`: the column sums of a (tokens, features) gradient, a linear layer's bias gradient.
`linear(x, weight, bias)`: a linear layer whose backward pass takes its bias gradient from `column_sum`.

Why: in a compiled ViT-B/16 training step Inductor computes the bias gradients (sums over 50,432
tokens of a bf16 (tokens, 768..3072) gradient) as reductions that reach 0.9-2.0 TB/s on an H200.
The same sum as a matrix-vector product with a vector of ones, ones @ g, is a cuBLAS GEMV that reads
g at 2.4-3.7 TB/s (docs/benchmarks.md section 10; a Triton kernel of ours reached 1.0-2.2 and was
dropped). It accumulates in fp32 and rounds once, as `sum` does. Off the GPU it is `sum(0)` in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.layers import cublaslt, ops
from vitkit.layers.norm import LayerNorm, folded_parameters


def _column_sum(x: torch.Tensor) -> torch.Tensor:
    """x (rows, cols) -> its sum over rows (cols), accumulated in fp32, returned in x's dtype."""
    if x.is_cuda:
        # a fresh vector each call (one tiny fill): a kept one would be a tensor that CUDA graphs'
        # memory pools refuse (vitkit.layers.cublaslt says the same of its workspace)
        return torch.mv(x.t(), x.new_ones(x.shape[0]))
    return x.sum(0, dtype=torch.promote_types(x.dtype, torch.float32)).to(x.dtype)


column_sum = ops.define("column_sum(Tensor x) -> Tensor", _column_sum, lambda x: x.new_empty(x.shape[1]))


def bias_gradient(grad: torch.Tensor, column_sums: bool) -> torch.Tensor:
    """A linear layer's bias gradient from its (tokens, features) output gradient: `column_sum`'s GEMV
    (speed option bias_grad) or the plain sum that Inductor compiles; both accumulate in fp32."""
    return column_sum(grad) if column_sums else grad.sum(0)


class _Linear(torch.autograd.Function):
    """x W^T + b, plus `residual` inside the matmul's epilogue when one is given."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, column_sums: bool):
        ctx.save_for_backward(x, weight)
        ctx.column_sums, ctx.with_residual = column_sums, residual is not None
        if residual is None:
            return torch.addmm(bias, x, weight.t())
        return cublaslt.linear_residual(x, weight, bias, residual)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_residual = grad if ctx.with_residual else None  # the add's gradient is the identity
        return grad_x, grad.t() @ x, bias_gradient(grad, ctx.column_sums), grad_residual, None


def apply_on_rows(function: type[torch.autograd.Function], x: torch.Tensor, tensors: tuple[torch.Tensor, ...],
                  out_features: int, *args) -> torch.Tensor:
    """function.apply(x as (rows, features), *tensors, *args), reshaped back to x's leading dimensions.

    Under autocast x and `tensors` (weights, biases) are cast to the autocast dtype first, as
    `F.linear` would, and the function runs with autocast off; gradients flow back through the casts.
    """
    device = x.device.type
    inputs = (x.reshape(-1, x.shape[-1]).contiguous(), *tensors)
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        inputs = tuple(t.to(dtype) for t in inputs)
    with torch.autocast(device, enabled=False):
        out = function.apply(*inputs, *args)
    return out.reshape(*x.shape[:-1], out_features)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) over the last dimension of x, its bias gradient from `column_sum`."""
    if bias is None or not torch.is_grad_enabled():
        return F.linear(x, weight, bias)
    return apply_on_rows(_Linear, x, (weight, bias), weight.shape[0], None, True)


def residual_linear(x: torch.Tensor, layer: nn.Linear, residual: torch.Tensor, column_sums: bool = False) -> torch.Tensor:
    """residual + layer(x), the add inside the matmul (speed option residual_epilogue).

    In a compiled pre-LN block the branch's output would be written, then read back by the kernel that
    adds it to the residual stream and normalises for the next branch. Here cuBLASLt reads the stream
    in the matmul's epilogue (beta = 1) and writes the new one, rounding once: one (tokens, width)
    tensor less through memory per block branch (docs/benchmarks.md section 15). The residual should
    already be in the matmul's dtype (bf16_residual): under autocast it is cast like x. column_sums:
    the bias gradient from `column_sum`.
    """
    width = layer.out_features
    return apply_on_rows(_Linear, x, (layer.weight, layer.bias, residual.reshape(-1, width)), width, column_sums)


def layer_linear(x: torch.Tensor, layer: nn.Linear, affine: LayerNorm | None = None,
                 column_sums: bool = False) -> torch.Tensor:
    """layer(x) the way the speed options want it.

    affine: the LayerNorm whose affine x still lacks (x = affine.normalize(...)), folded into the
    layer's weight and bias (speed option fold_norm). column_sums: the bias gradient from `column_sum`
    (speed option bias_grad). With neither, the module's own forward, which speed option fp8 replaces.
    """
    if affine is None and not column_sums:
        return layer(x)
    weight, bias = folded_parameters(layer, affine)
    return linear(x, weight, bias) if column_sums else F.linear(x, weight, bias)

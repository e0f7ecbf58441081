"""The MLP as one autograd node on cuBLASLt epilogues (speed option `mlp_epilogues`).

`mlp_tanh_gelu(x, w1, b1, w2, b2)` computes fc2(gelu_tanh(fc1(x))) so that GELU and its gradient happen
inside the matmuls next to them:

    forward:  g, pre = gelu(x W1^T + b1), x W1^T + b1      one matmul (GELU_AUX_BIAS)
              y = g W2^T + b2 [+ residual]                 one matmul (bias epilogue, beta 1 with a residual)
    backward: dW2, db2 = dy^T g, sum(dy)
              dpre = (dy W2) * gelu'(pre)                  one matmul (DGELU)
              db1, dW1, dx = sum(dpre), dpre^T x, dpre W1   (dgelu_sums: db1 in the DGELU matmul)

Compiled without it, Inductor runs GELU forward and GELU backward as element-wise kernels that
re-read the (tokens, 4 x width) hidden activation and gradient which a matmul has just written.

Under autocast the inputs are cast to the autocast dtype first, as `F.linear` would; gradients flow
back through those casts to fp32 parameters (vitkit.layers.bias_grad.apply_on_rows). Off the GPU the same autograd node runs on the
reference maths of vitkit.layers.cublaslt, which is how CPU tests check the backward formulas.
"""

from __future__ import annotations

import torch

from vitkit.layers import cublaslt, dgelu_matmul
from vitkit.layers.bias_grad import apply_on_rows, bias_gradient
from vitkit.layers.linear_gelu import matmul_dtype


class _TanhGeluMlp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, residual, column_sums: bool, dgelu_sums: bool):
        hidden, pre = cublaslt.linear_gelu_aux(x, w1, b1)
        ctx.save_for_backward(x, w1, w2, hidden, pre)
        ctx.column_sums, ctx.dgelu_sums, ctx.with_residual = column_sums, dgelu_sums, residual is not None
        if residual is None:
            return torch.addmm(b2, hidden, w2.t())
        return cublaslt.linear_residual(hidden, w2, b2, residual)

    @staticmethod
    def backward(ctx, grad):
        x, w1, w2, hidden, pre = ctx.saved_tensors
        grad = grad.contiguous()
        if ctx.dgelu_sums:  # fc1's bias gradient summed inside the DGELU matmul (vitkit.layers.dgelu_matmul)
            grad_pre, grad_b1 = dgelu_matmul.linear_dgelu_bias_grad(grad, w2, pre)
            grad_b1 = grad_b1.to(w1.dtype)  # as the plain sum of the rounded gradient returns it
        else:
            grad_pre = cublaslt.linear_dgelu(grad, w2, pre)
            grad_b1 = bias_gradient(grad_pre, ctx.column_sums)
        grad_x = grad_pre @ w1 if ctx.needs_input_grad[0] else None
        return (grad_x, grad_pre.t() @ x, grad_b1, grad.t() @ hidden, bias_gradient(grad, ctx.column_sums),
                grad if ctx.with_residual else None, None, None)


def mlp_tanh_gelu(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                  column_sums: bool = False, residual: torch.Tensor | None = None,
                  dgelu_sums: bool = False) -> torch.Tensor:
    """gelu_tanh(x w1^T + b1) w2^T + b2 [+ residual] over the last dimension of x, trainable, fused where
    cuBLASLt runs.

    Weights are (out, in) as in nn.Linear; tensors rather than layers, so fc1's may come folded with
    a LayerNorm's affine (speed option fold_norm). column_sums: bias gradients from
    vitkit.layers.bias_grad's GEMV rather than Inductor's sums. residual: added inside fc2's matmul
    (speed option residual_epilogue; vitkit.layers.bias_grad.residual_linear says why). dgelu_sums:
    GELU's gradient and fc1's bias gradient from one Triton matmul (speed option dgelu_bias_sum,
    vitkit.layers.dgelu_matmul) instead of cuBLASLt's DGELU and a sum.
    """
    width = w2.shape[0]
    if residual is None:
        return apply_on_rows(_TanhGeluMlp, x, (w1, b1, w2, b2), width, None, column_sums, dgelu_sums)
    return apply_on_rows(_TanhGeluMlp, x, (w1, b1, w2, b2, residual.reshape(-1, width)), width, column_sums,
                         dgelu_sums)


def applies(x: torch.Tensor) -> bool:
    """Whether to take the fused path: gradients on, CUDA, 16-bit matmuls.

    Elsewhere (CPU, fp32, inference) the plain layers are as fast (Inductor fuses their element-wise
    work itself; inference has its own fused call, vitkit.layers.linear_gelu).
    """
    return x.is_cuda and torch.is_grad_enabled() and matmul_dtype(x) in (torch.bfloat16, torch.float16)

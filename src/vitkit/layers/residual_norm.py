"""A residual add, the bias of the linear layer before it and the next LayerNorm as one autograd node
(speed option `norm_bias`, with `fold_norm`).

    m = x + y + b,    xhat = (m - mean(m)) / std(m)          (per token, over the width)

x is the residual stream, y the output of an encoder block's proj or fc2 matmul *without* its bias b,
and xhat feeds the next qkv or fc1 matmul with the norm's affine folded in (vitkit.layers.norm).

Why: b's gradient is the column sum, over every token, of dm, the gradient of the residual stream
after the add. Computed by itself it re-reads that (tokens, width) gradient: Inductor's sum reaches
0.9 TB/s on an H200 at ViT-B/16's width, a cuBLAS GEMV 2.5 TB/s plus a fill, a memset and a split-K
reduction (docs/benchmarks.md section 10). But dm is exactly what the LayerNorm's backward writes
(dm = g_m + LN'(g_xhat)), so the backward kernel here sums each program's rows while it holds them
and writes one partial sum per program; b's gradient is the sum of those few partials. The forward
is plain PyTorch: compiled, Inductor fuses the adds and the norm into one kernel as before.

Off the GPU (or without Triton) the backward runs the same maths with PyTorch ops; the kernel itself
is tested under Triton's interpreter.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs without Triton: the PyTorch backward is used
    triton = None

ROWS_PER_PROGRAM = 64  # rows (tokens) one backward program sums: 788 partials for ViT-B/16 at batch 256
BLOCK_ROWS = 4  # rows the kernel holds at a time
WARPS = 4

if triton is not None:
    @triton.jit
    def _norm_backward_kernel(grad_xhat_ptr, grad_m_ptr, m_ptr, mean_ptr, rstd_ptr, grad_ptr, partial_ptr, n_rows,
                              WIDTH: tl.constexpr, HAS_GRAD_M: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr,
                              BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
        pid = tl.program_id(0)
        cols = tl.arange(0, BLOCK_COLS)
        col_ok = cols < WIDTH
        col_sum = tl.zeros([BLOCK_COLS], dtype=tl.float32)
        for start in tl.range(pid * ROWS_PER_PROGRAM, (pid + 1) * ROWS_PER_PROGRAM, BLOCK_ROWS):
            rows = start + tl.arange(0, BLOCK_ROWS)
            row_ok = rows < n_rows
            ok = row_ok[:, None] & col_ok[None, :]
            offsets = rows[:, None].to(tl.int64) * WIDTH + cols[None, :]
            grad_xhat = tl.load(grad_xhat_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
            m = tl.load(m_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
            mean = tl.load(mean_ptr + rows, mask=row_ok, other=0.0)
            rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
            xhat = tl.where(ok, (m - mean[:, None]) * rstd[:, None], 0.0)
            mean_grad = tl.sum(grad_xhat, axis=1) / WIDTH
            mean_grad_xhat = tl.sum(grad_xhat * xhat, axis=1) / WIDTH
            grad = (grad_xhat - mean_grad[:, None] - xhat * mean_grad_xhat[:, None]) * rstd[:, None]
            if HAS_GRAD_M:
                grad += tl.load(grad_m_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
            grad = tl.where(ok, grad, 0.0)
            tl.store(grad_ptr + offsets, grad.to(grad_ptr.dtype.element_ty), mask=ok)
            col_sum += tl.sum(grad, axis=0)
        tl.store(partial_ptr + pid * WIDTH + cols, col_sum, mask=col_ok)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in fp32, or fp64 if it is fp64: the precision the statistics and gradients are computed in."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _statistics(m: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean and 1/std of m (rows, width), in fp32 (fp64 for fp64), as F.layer_norm computes them."""
    var, mean = torch.var_mean(_wide(m), dim=-1, correction=0)
    return mean, torch.rsqrt(var + eps)


def _reference_backward(grad_xhat: torch.Tensor, grad_m: torch.Tensor | None, m: torch.Tensor, mean: torch.Tensor,
                        rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's maths in PyTorch ops: (dm in m's dtype, its column sums (1, width) in fp32 or fp64)."""
    xhat = (_wide(m) - mean[:, None]) * rstd[:, None]
    g = _wide(grad_xhat)
    grad = (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True)) * rstd[:, None]
    if grad_m is not None:
        grad = grad + _wide(grad_m)
    return grad.to(m.dtype), grad.sum(0, keepdim=True)


def norm_backward(grad_xhat: torch.Tensor, grad_m: torch.Tensor | None, m: torch.Tensor, mean: torch.Tensor,
                  rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dm = grad_m + LayerNorm'(grad_xhat) for (rows, width) tensors, and per-program column sums of dm.

    Returns (dm in m's dtype, partial sums (programs, width) in fp32 whose sum over programs is dm's
    column sum). The Triton kernel runs on CUDA tensors (and on CPU under TRITON_INTERPRET=1).
    """
    if not _uses_kernel(m):
        return _reference_backward(grad_xhat, grad_m, m, mean, rstd)
    n_rows, width = m.shape
    grad = torch.empty_like(m)
    programs = _programs(m)
    partials = torch.empty(programs, width, device=m.device, dtype=torch.float32)
    _norm_backward_kernel[(programs,)](
        grad_xhat.contiguous(), grad_xhat if grad_m is None else grad_m.contiguous(), m, mean, rstd, grad, partials,
        n_rows, WIDTH=width, HAS_GRAD_M=grad_m is not None, ROWS_PER_PROGRAM=ROWS_PER_PROGRAM,
        BLOCK_ROWS=BLOCK_ROWS, BLOCK_COLS=triton.next_power_of_2(width), num_warps=WARPS)
    return grad, partials


def _uses_kernel(m: torch.Tensor) -> bool:
    return triton is not None and (m.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


def _programs(m: torch.Tensor) -> int:
    """Rows of partial sums norm_backward returns for m."""
    return triton.cdiv(m.shape[0], ROWS_PER_PROGRAM) if _uses_kernel(m) else 1


@torch.library.custom_op("vitkit::norm_backward", mutates_args=())
def _norm_backward_op(grad_xhat: torch.Tensor, grad_m: torch.Tensor | None, m: torch.Tensor, mean: torch.Tensor,
                      rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # opaque to Inductor, like vitkit.layers.tile_attention's kernels (launched by Triton itself)
    return norm_backward(grad_xhat, grad_m, m, mean, rstd)


@_norm_backward_op.register_fake
def _(grad_xhat, grad_m, m, mean, rstd):
    return torch.empty_like(m), m.new_empty(_programs(m), m.shape[1], dtype=torch.float32)


class _AddBiasNormalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, bias, eps: float):
        m = (_wide(x) + _wide(y) + _wide(bias)).to(x.dtype)  # one rounding, as a fused kernel does
        mean, rstd = _statistics(m, eps)
        xhat = ((_wide(m) - mean[:, None]) * rstd[:, None]).to(m.dtype)
        ctx.save_for_backward(m, mean, rstd)
        ctx.bias_dtype = bias.dtype
        return m, xhat

    @staticmethod
    def backward(ctx, grad_m, grad_xhat):
        m, mean, rstd = ctx.saved_tensors
        grad, partials = _norm_backward_op(grad_xhat.contiguous(), grad_m, m, mean, rstd)
        return grad, grad, partials.sum(0).to(ctx.bias_dtype), None


def add_bias_normalize(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, xhat): m = x + y + bias in x's dtype, xhat = m normalised over the last dimension (no affine).

    x and y have the same shape (..., width) and dtype; bias is (width,), any float dtype (a parameter),
    and receives its gradient in its own dtype. Runs with autocast off: the residual stream keeps
    x's dtype, as vitkit.layers.norm.LayerNorm does.
    """
    if x.shape != y.shape or x.dtype != y.dtype or bias.shape != x.shape[-1:]:
        raise ValueError(f"add_bias_normalize wants x and y of one shape and dtype and a bias of their width, "
                         f"got {tuple(x.shape)} {x.dtype}, {tuple(y.shape)} {y.dtype}, {tuple(bias.shape)}")
    width = x.shape[-1]
    with torch.autocast(x.device.type, enabled=False):
        m, xhat = _AddBiasNormalize.apply(x.reshape(-1, width), y.reshape(-1, width), bias, eps)
    return m.view(x.shape), xhat.view(x.shape)

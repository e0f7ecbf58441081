"""Bias + tanh GELU for training on the GPU: one Triton kernel forward, one backward that also sums
the bias gradient.

Why: compiled, the MLP's activation costs three element-wise passes per layer (measured on ViT-B/16,
docs/benchmarks.md section 9): the forward GELU, the backward GELU, and a third kernel that Inductor
adds for fc1's bias gradient, which re-reads the GELU's input and output gradient (2 x 310 MB per
B/16 layer at batch 256) instead of the gradient it has just written. Here fc1 runs without its bias
and this op adds it: the forward writes gelu(h + b); the backward writes dh = da * gelu'(h + b) and,
in the same pass, sums dh's columns over each program's rows (about a thousand), so the bias
gradient costs a read of a small (row chunks x features) buffer.

Registered as an opaque custom op with autograd (like vitkit.layers.tile_attention, for the same
reason: Triton kernels traced into a compiled graph ran slower than launched by Triton).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs without Triton: linear_gelu's plain path is used
    triton = None

class Launch(NamedTuple):
    """Tile sizes: the forward is flat (elements per program), the backward walks row chunks so that
    each program sums its columns over many rows before writing one partial bias gradient."""

    block: int  # forward: elements per program
    warps: int
    rows: int  # backward: rows per step
    cols: int  # backward: features per program
    row_steps: int  # backward: steps per program (rows x row_steps rows share one partial sum)
    backward_warps: int


def launch(n_rows: int, n_cols: int) -> Launch:
    """Launch sizes (measured on an H200 for ViT-B/16's fc1 output, scripts/bias_gelu_bench.py)."""
    return Launch(block=1024, warps=4, rows=16, cols=256, row_steps=64, backward_warps=4)


if triton is not None:
    @triton.jit
    def _bias_gelu_forward_kernel(h_ptr, bias_ptr, out_ptr, n_elements, n_cols, BLOCK: tl.constexpr):
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = at < n_elements
        x = tl.load(h_ptr + at, mask=ok, other=0.0).to(tl.float32)
        x += tl.load(bias_ptr + at % n_cols, mask=ok, other=0.0).to(tl.float32)
        # 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
        s = tl.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
        tl.store(out_ptr + at, (x * s).to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _bias_gelu_backward_kernel(grad_ptr, h_ptr, bias_ptr, grad_h_ptr, partial_ptr, n_rows, n_cols,
                                   ROWS: tl.constexpr, COLS: tl.constexpr, ROW_STEPS: tl.constexpr):
        chunk = tl.program_id(0)
        cols = tl.program_id(1) * COLS + tl.arange(0, COLS)
        col_ok = cols < n_cols
        bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        bias_grad = tl.zeros((ROWS, COLS), dtype=tl.float32)
        for step in range(ROW_STEPS):
            rows = (chunk * ROW_STEPS + step) * ROWS + tl.arange(0, ROWS)
            ok = (rows < n_rows)[:, None] & col_ok[None, :]
            at = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
            x = tl.load(h_ptr + at, mask=ok, other=0.0).to(tl.float32) + bias[None, :]
            g = tl.load(grad_ptr + at, mask=ok, other=0.0).to(tl.float32)
            s = tl.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
            slope = s + x * s * (1.0 - s) * 1.5957691216057308 * (1.0 + 0.134145 * x * x)
            grad_h = (g * slope).to(grad_h_ptr.dtype.element_ty)
            tl.store(grad_h_ptr + at, grad_h, mask=ok)
            # the bias gradient sums the rounded gradient, as a separate reduction of dh would
            bias_grad += tl.where(ok, grad_h.to(tl.float32), 0.0)
        tl.store(partial_ptr + chunk.to(tl.int64) * n_cols + cols, tl.sum(bias_grad, 0), mask=col_ok)


def _check(h: torch.Tensor, bias: torch.Tensor) -> None:
    if h.ndim != 2 or bias.ndim != 1 or bias.shape[0] != h.shape[1]:
        raise ValueError(f"bias_gelu wants h of (rows, features) and a bias of (features,), got "
                         f"{tuple(h.shape)} and {tuple(bias.shape)}")


def _forward(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    _check(h, bias)
    h = h.contiguous()
    out = torch.empty_like(h)
    cfg = launch(*h.shape)
    _bias_gelu_forward_kernel[(triton.cdiv(h.numel(), cfg.block),)](
        h, bias.contiguous(), out, h.numel(), h.shape[1], BLOCK=cfg.block, num_warps=cfg.warps)
    return out


def _backward(grad: torch.Tensor, h: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grad, h = grad.contiguous(), h.contiguous()
    grad_h = torch.empty_like(h)
    cfg = launch(*h.shape)
    chunks = triton.cdiv(h.shape[0], cfg.rows * cfg.row_steps)
    partial = torch.empty(chunks, h.shape[1], device=h.device, dtype=torch.float32)
    _bias_gelu_backward_kernel[(chunks, triton.cdiv(h.shape[1], cfg.cols))](
        grad, h, bias.contiguous(), grad_h, partial, h.shape[0], h.shape[1], ROWS=cfg.rows, COLS=cfg.cols,
        ROW_STEPS=cfg.row_steps, num_warps=cfg.backward_warps)
    return grad_h, partial.sum(0).to(bias.dtype)


if triton is not None:
    @torch.library.custom_op("vitkit::bias_gelu", mutates_args=())
    def _forward_op(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return _forward(h, bias)

    @_forward_op.register_fake
    def _(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(h)

    @torch.library.custom_op("vitkit::bias_gelu_backward", mutates_args=())
    def _backward_op(grad: torch.Tensor, h: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _backward(grad, h, bias)

    @_backward_op.register_fake
    def _(grad: torch.Tensor, h: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty_like(h), torch.empty_like(bias)

    def _setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def _grad(ctx, grad: torch.Tensor):
        h, bias = ctx.saved_tensors
        return _backward_op(grad, h, bias)

    _forward_op.register_autograd(_grad, setup_context=_setup_context)


def available() -> bool:
    """True when Triton is importable (the kernels also need a CUDA device, or TRITON_INTERPRET=1)."""
    return triton is not None


def bias_gelu(h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(h + bias) for h of (rows, features), differentiable in both; the output has h's dtype."""
    if triton is None:
        raise RuntimeError("bias_gelu needs Triton (pip install triton)")
    return _forward_op(h, bias)

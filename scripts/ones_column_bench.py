"""Can a linear layer's bias gradient come out of its weight-gradient matmul? A measurement.

If the layer's input x (tokens, K) carries an extra column of ones, x_aug = [x, 1, 0...0] (K + 8
columns, so rows stay 16-byte aligned), then grad^T x_aug = [grad^T x, grad^T 1]: the weight gradient
and, in column K, the bias gradient (the column sums of grad), from one matmul. This times, compiled,
bf16, at ViT-B/16's and the CIFAR-scale model's shapes:

- LayerNorm alone against LayerNorm writing into the ones-column layout (torch.cat after it), and
  how many kernels Inductor made of each;
- the forward matmul reading x from the wider rows (lda = K + 8) against contiguous x;
- the weight-gradient matmul with K + 8 output columns against K columns plus the bias gradient
  as Inductor's column sum and as the cuBLAS GEMV of speed option bias_grad.

    [CODE_DIR=dir] python scripts/ones_column_bench.py
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

from vitkit.bench import time_steps
from vitkit.layers.bias_grad import column_sum

SHAPES = {"b16_b256": (256 * 197, 768, (2304, 3072)), "cifar_scale_b512": (512 * 65, 384, (1152, 1536))}
PAD = 8


def norm(x, residual):
    y = x + residual
    return y, F.layer_norm(y, y.shape[-1:], eps=1e-6)


def norm_ones(x, residual):
    y, xhat = norm(x, residual)
    ones = xhat.new_ones(xhat.shape[0], 1)
    zeros = xhat.new_zeros(xhat.shape[0], PAD - 1)
    return y, torch.cat([xhat, ones, zeros], dim=-1)


def kernels_in(code: list[str]) -> int:
    return sum(src.count("@triton.jit") for src in code)


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    for shape, (rows, width, outs) in SHAPES.items():
        bench_shape(shape, rows, width, outs)


def bench_shape(shape: str, rows: int, width: int, outs: tuple[int, ...]) -> None:
    device = torch.device("cuda")
    x = torch.randn(rows, width, device=device, dtype=torch.bfloat16)
    residual = torch.randn_like(x)
    for name, fn in (("layer_norm", norm), ("layer_norm_ones_column", norm_ones)):
        compiled = torch.compile(fn, dynamic=False)
        _, code = run_and_get_code(compiled, x, residual)
        ms = time_steps(lambda c=compiled: c(x, residual), device, warmup=3, iters=20, repeats=5)
        emit(shape=shape, op="norm_forward", impl=name, ms=round(ms, 4), triton_kernels=kernels_in(code))
        if os.environ.get("CODE_DIR"):  # Inductor's code, to see what it fused
            with open(os.path.join(os.environ["CODE_DIR"], f"{shape}-{name}.py"), "w") as f:
                f.write("\n\n".join(code))
    x_aug = norm_ones(x, residual)[1]
    assert x_aug.stride() == (width + PAD, 1)
    x_view = x_aug[:, :width]
    for out_features in outs:
        weight = torch.randn(out_features, width, device=device, dtype=torch.bfloat16) / width**0.5
        bias = torch.randn(out_features, device=device, dtype=torch.bfloat16)
        grad = torch.randn(rows, out_features, device=device, dtype=torch.bfloat16)
        calls = {
            ("forward", "contiguous_x"): lambda w=weight, b=bias: torch.addmm(b, x, w.t()),
            ("forward", "x_rows_of_k_plus_8"): lambda w=weight, b=bias: torch.addmm(b, x_view, w.t()),
            ("weight_grad", "mm_only"): lambda g=grad: g.t() @ x,
            ("weight_grad", "mm_plus_gemv"): lambda g=grad: (g.t() @ x, column_sum(g)),
            ("weight_grad", "mm_plus_sum"): torch.compile(lambda g: (g.t() @ x, g.sum(0)), dynamic=False),
            ("weight_grad", "mm_ones_column"): lambda g=grad: g.t() @ x_aug,
        }
        want = grad.float().sum(0)
        for (op, impl), call in calls.items():
            out = call(grad) if impl == "mm_plus_sum" else call()
            row = {"shape": shape, "op": op, "impl": impl, "out_features": out_features}
            if impl == "mm_ones_column":
                row["bias_grad_max_rel_err"] = ((out[:, width].float() - want).abs().max() / want.abs().max()).item()
            step = (lambda c=call, g=grad: c(g)) if impl == "mm_plus_sum" else call
            row["ms"] = round(time_steps(step, device, warmup=3, iters=20, repeats=5), 4)
            emit(**row)


if __name__ == "__main__":
    main()

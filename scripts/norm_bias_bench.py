"""The LayerNorm backward with the bias gradient of the layer before it (speed option norm_bias), alone:
vitkit's Triton kernel (several launch sizes) against what the model computes without the option,
compiled: Inductor's LayerNorm backward plus Inductor's column sum, or plus the cuBLAS GEMV of
speed option bias_grad. bf16, one JSON line per (shape, implementation).

    python scripts/norm_bias_bench.py
"""

from __future__ import annotations

import json

import torch

from vitkit.bench import time_steps
from vitkit.layers import residual_norm as rn
from vitkit.layers.bias_grad import column_sum

SHAPES = {"b16_b256": (256 * 197, 768), "cifar_scale_b512": (512 * 65, 384)}
LAUNCHES = [(64, 4, 4), (32, 4, 4), (128, 4, 4), (64, 8, 8), (64, 2, 4), (128, 8, 8), (256, 8, 8)]


def inductor_path(sum_op):
    def backward(grad_xhat, grad_m, m, mean, rstd):
        xhat = (m.float() - mean[:, None]) * rstd[:, None]
        g = grad_xhat.float()
        grad = ((g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True)) * rstd[:, None]
                + grad_m.float()).to(m.dtype)
        return grad, sum_op(grad)
    return torch.compile(backward, dynamic=False)


def main() -> None:
    device = torch.device("cuda")
    for shape, (rows, width) in SHAPES.items():
        m = torch.randn(rows, width, device=device, dtype=torch.bfloat16)
        var, mean = torch.var_mean(m.float(), dim=-1, correction=0)
        rstd = torch.rsqrt(var + 1e-6)
        grad_xhat, grad_m = torch.randn_like(m), torch.randn_like(m)
        args = (grad_xhat, grad_m, m, mean, rstd)
        moved = 4 * rows * width * 2  # bytes: read grad_xhat, grad_m, m; write the gradient
        impls = {"inductor_sum": inductor_path(lambda g: g.sum(0, dtype=torch.float32)),
                 "inductor_gemv": inductor_path(column_sum)}
        for rpp, block_rows, warps in LAUNCHES:
            def kernel(*a, rpp=rpp, block_rows=block_rows, warps=warps):
                rn.ROWS_PER_PROGRAM, rn.BLOCK_ROWS, rn.WARPS = rpp, block_rows, warps
                grad, partials = rn.norm_backward(*a)
                return grad, partials.sum(0)
            impls[f"kernel_r{rpp}_b{block_rows}_w{warps}"] = kernel
        want = impls["inductor_sum"](*args)
        for name, fn in impls.items():
            grad, sums = fn(*args)
            err = (grad.float() - want[0].float()).abs().max().item()
            sum_err = (sums.float() - want[1].float()).abs().max().item()
            ms = time_steps(lambda fn=fn, args=args: fn(*args), device, warmup=5, iters=20, repeats=5)
            print(json.dumps({"shape": shape, "rows": rows, "width": width, "impl": name, "ms": round(ms, 4),
                              "tb_s": round(moved / ms / 1e9, 2), "max_err": err, "sum_max_err": sum_err}),
                  flush=True)


if __name__ == "__main__":
    main()

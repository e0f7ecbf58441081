"""LayerNorm's forward at the CIFAR-scale shape: Inductor's generated kernel against a hand-written
Triton one, alone, on a GPU. A measurement (docs/benchmarks.md section 18).

    PYTHONPATH=src python scripts/layer_norm_bench.py [--rows 33280 --width 384]

Both read a bf16 (rows, width) tensor and write the normalised bf16 tensor and each row's fp32 mean and
reciprocal standard deviation, what the training step's LayerNorm without affine (fold_norm) keeps for
its backward. Prints one JSON line per case: ms per call replayed in a CUDA graph, and the rate
at which it moves its bytes.
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch
import triton
import triton.language as tl

from vitkit.bench import time_graph


@triton.jit
def _layer_norm_kernel(x_ptr, y_ptr, mean_ptr, rstd_ptr, n_rows, WIDTH: tl.constexpr, BLOCK: tl.constexpr,
                       ROWS: tl.constexpr, EPS: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    ok = (rows < n_rows)[:, None] & (cols < WIDTH)[None, :]
    at = rows.to(tl.int64)[:, None] * WIDTH + cols[None, :]
    x = tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
    mean = tl.sum(x, 1) / WIDTH
    centred = tl.where(ok, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(centred * centred, 1) / WIDTH + EPS)
    tl.store(y_ptr + at, (centred * rstd[:, None]).to(y_ptr.dtype.element_ty), mask=ok)
    tl.store(mean_ptr + rows, mean, mask=rows < n_rows)
    tl.store(rstd_ptr + rows, rstd, mask=rows < n_rows)


def triton_layer_norm(x: torch.Tensor, rows_per_program: int, warps: int) -> tuple[torch.Tensor, ...]:
    n_rows, width = x.shape
    y = torch.empty_like(x)
    mean = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    _layer_norm_kernel[(triton.cdiv(n_rows, rows_per_program),)](
        x, y, mean, rstd, n_rows, WIDTH=width, BLOCK=triton.next_power_of_2(width), ROWS=rows_per_program,
        EPS=1e-6, num_warps=warps)
    return y, mean, rstd


def eager_layer_norm(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    wide = x.float()
    var, mean = torch.var_mean(wide, dim=-1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + 1e-6)
    return ((wide - mean) * rstd).to(x.dtype), mean, rstd


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=512 * 65)
    p.add_argument("--width", type=int, default=384)
    args = p.parse_args()
    x = torch.randn(args.rows, args.width, device="cuda", dtype=torch.bfloat16)
    moved = 2 * x.numel() * x.element_size() + 8 * args.rows  # read x, write y, mean, rstd
    want = eager_layer_norm(x)[0].float()
    compiled = torch.compile(eager_layer_norm, dynamic=False)
    cases = {"inductor": lambda: compiled(x)}
    for rows, warps in itertools.product((1, 2, 4, 8, 16, 32), (1, 2, 4, 8)):
        cases[f"triton rows={rows} warps={warps}"] = lambda rows=rows, warps=warps: triton_layer_norm(x, rows, warps)
    for name, fn in cases.items():
        row = {"case": name}
        try:
            row["max_err"] = round((fn()[0].float() - want).abs().max().item(), 4)
            ms = time_graph(fn)
            row.update(ms=round(ms, 4), tb_s=round(moved / ms / 1e9, 2))
        except Exception as e:  # noqa: BLE001 -- a launch that does not compile is a result too
            row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

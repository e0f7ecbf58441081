"""Bias gradients (column sums of a (tokens, features) bf16 gradient) by the ways PyTorch offers.

    PYTHONPATH=src python scripts/bias_grad_bench.py

Shapes are ViT-B/16's at batch 256: fc1 (3072), qkv (2304), proj and fc2 (768) over 50,432 tokens.
Prints one JSON line per shape: median ms and GB/s of Inductor's compiled sum, a cuBLAS
matrix-vector product with a vector of ones, and vitkit's `column_sum` (that product as a custom op).
The Triton column-sum kernel measured in docs/benchmarks.md section 10 was removed after it lost.
"""

from __future__ import annotations

import json

import torch
from mlp_epilogue_bench import median_ms  # same folder: the same per-call timing

from vitkit.layers.bias_grad import column_sum


def main() -> None:
    compiled_sum = torch.compile(lambda g: g.sum(0))
    for features in (3072, 2304, 768):
        grad = torch.randn(256 * 197, features, device="cuda", dtype=torch.bfloat16)
        ones = torch.ones(grad.shape[0], device="cuda", dtype=torch.bfloat16)
        ref = grad.float().sum(0)
        row = {"tokens": grad.shape[0], "features": features}
        for name, fn in [("inductor_sum", lambda g=grad: compiled_sum(g)), ("cublas_mv", lambda g=grad, o=ones: o @ g),
                         ("column_sum", lambda g=grad: column_sum(g))]:
            err = ((fn().float() - ref).norm() / ref.norm()).item()
            ms = median_ms(fn)
            row[name] = {"ms": round(ms, 4), "GB_s": round(grad.numel() * 2 / ms / 1e6), "rel_err": f"{err:.1e}"}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

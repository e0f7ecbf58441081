"""The Gluon ping-pong form of dgelu_bias_sum's matmul (vitkit.layers.dgelu_pingpong) against the op's
Triton launches (vitkit.layers.dgelu_matmul) and cuBLASLt's DGELU without the sums.

    PYTHONPATH=src python scripts/dgelu_pingpong_bench.py [--shape cifar|b16]

Prints one JSON line per (shape, case): the error against fp32 maths and ms per call as CUDA-graph
replays (kernel time without host launches).
"""

from __future__ import annotations

import argparse
import functools
import json

import torch

from vitkit.bench import time_graph
from vitkit.layers import cublaslt, dgelu_matmul, dgelu_pingpong

SHAPES = {"cifar": (512 * 65, 384, 1536), "b16": (256 * 197, 768, 3072)}  # tokens, width, hidden
PINGPONG = [{"block_n": 128, "stages": 4}, {"block_n": 64, "stages": 6},
            {"block_n": 128, "stages": 3, "stationary": True}, {"block_n": 128, "stages": 2, "stationary": True},
            {"block_n": 64, "stages": 6, "stationary": True}, {"block_n": 64, "stages": 4, "stationary": True}]

# parts: 0 the whole epilogue, 1 without the column sums, 2 also without GELU's derivative (acc * pre),
# 3 also without pre (acc stored), 4 nothing stored
PARTS = [{"block_n": block_n, "stages": stages, "parts": parts, "ordered": ordered}
         for block_n, stages in ((128, 4), (64, 6)) for ordered in (True, False) for parts in range(5)]

# sums_layout: 0 (columns, row blocks), 1 (row blocks, columns), 2 (row blocks x 4 warps, columns);
# store: 0 by TMA from the pre buffer, 1 from registers; io_buffers: pre/result buffers per consumer
VARIANTS = [{"block_n": 128, "stages": 4}, {"block_n": 128, "stages": 4, "sums_layout": 1},
            {"block_n": 128, "stages": 4, "sums_layout": 2}, {"block_n": 128, "stages": 3, "sums_layout": 2, "io_buffers": 2},
            {"block_n": 128, "stages": 4, "sums_layout": 2, "store": 1},
            {"block_n": 64, "stages": 6, "sums_layout": 2}, {"block_n": 64, "stages": 6, "sums_layout": 2, "io_buffers": 2},
            {"block_n": 64, "stages": 8, "sums_layout": 2, "store": 1},
            {"block_n": 128, "stages": 3, "sums_layout": 2, "io_buffers": 2, "parts": 1},
            {"block_n": 128, "stages": 3, "sums_layout": 2, "io_buffers": 2, "parts": 3},
            {"block_n": 128, "stages": 3, "sums_layout": 2, "io_buffers": 2, "parts": 4}]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", choices=sorted(SHAPES))
    p.add_argument("--parts", action="store_true", help="switch parts of the epilogue off, and the turns")
    p.add_argument("--variants", action="store_true", help="the layouts of the sums, the stores, the buffers")
    args = p.parse_args()
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    for shape in args.shape or sorted(SHAPES):
        tokens, width, hidden = SHAPES[shape]
        torch.manual_seed(0)
        grad, pre = torch.randn(tokens, width, **bf), torch.randn(tokens, hidden, **bf)
        weight = torch.randn(width, hidden, **bf) / width**0.5
        want = (grad.float() @ weight.float()) * dgelu_matmul.gelu_tanh_grad(pre)
        cases = {"cublas matmul alone (the floor: no epilogue, no sums)": functools.partial(torch.matmul, grad, weight),
                 "cublaslt dgelu (no sums)": functools.partial(cublaslt.linear_dgelu, grad, weight, pre)}
        for config in dgelu_matmul.LAUNCHES:
            cases[f"triton {config}"] = functools.partial(dgelu_matmul.launch, grad, weight, pre, **config)
        for config in VARIANTS if args.variants else []:
            cases[f"gluon ping-pong {config}"] = functools.partial(dgelu_pingpong.launch, grad, weight, pre, **config)
        for config in PINGPONG if not (args.parts or args.variants) else []:
            cases[f"gluon ping-pong {config}"] = functools.partial(dgelu_pingpong.launch, grad, weight, pre, **config)
        for config in PARTS if args.parts else []:
            cases[f"gluon ping-pong {config}"] = functools.partial(dgelu_pingpong.launch, grad, weight, pre, **config)
        for name, fn in cases.items():
            row = {"shape": shape, "case": name}
            try:
                out = fn()
                grad_pre, sums = out if isinstance(out, tuple) else (out, None)
                if "floor" not in name:
                    row["grad_pre_rel_err"] = round(((grad_pre.float() - want).norm() / want.norm()).item(), 5)
                    row["grad_pre_max_excess"] = round(((grad_pre.float() - want).abs()
                                                        - want.abs() * 2**-7 - 1e-2).max().item(), 4)
                if sums is not None:
                    bias = sums.sum(1)
                    row["bias_rel_err"] = round(((bias - want.sum(0)).norm() / want.sum(0).norm()).item(), 6)
                row["ms"] = round(time_graph(fn), 4)
            except Exception as e:  # noqa: BLE001 -- a launch that does not compile is a result too
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""The Gluon ping-pong form of dgelu_bias_sum's matmul (vitkit.layers.dgelu_pingpong) against the op's
Triton launches (vitkit.layers.dgelu_matmul) and cuBLASLt's DGELU without the sums.

    PYTHONPATH=src python scripts/dgelu_pingpong_bench.py [--shape cifar|b16]

(The experiments with parts of the epilogue switched off and the variants of section 19 ran with
this script's --parts and --variants on branch round15-pingpong-variants.)

Prints one JSON line per (shape, case): the error against fp32 maths and ms per call as CUDA-graph
replays (kernel time without host launches).
"""

from __future__ import annotations

import argparse
import functools
import json

import torch
from dgelu_bias_sum_bench import SHAPES, problem  # same folder: the same shapes and operands

from vitkit.bench import time_graph
from vitkit.layers import cublaslt, dgelu_matmul, dgelu_pingpong


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", choices=sorted(SHAPES))
    args = p.parse_args()
    for shape in args.shape or sorted(SHAPES):
        grad, weight, pre, want = problem(shape)
        cases = {"cublas matmul alone (the floor: no epilogue, no sums)": functools.partial(torch.matmul, grad, weight),
                 "cublaslt dgelu (no sums)": functools.partial(cublaslt.linear_dgelu, grad, weight, pre)}
        for config in dgelu_matmul.LAUNCHES:
            cases[f"triton {config}"] = functools.partial(dgelu_matmul.launch, grad, weight, pre, **config)
        for block_n, stages in ((128, 4), (128, 3), (64, 6)):
            cases[f"gluon ping-pong block_n {block_n}, {stages} stages"] = functools.partial(
                dgelu_pingpong.launch, grad, weight, pre, block_n=block_n, stages=stages)
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
                    bias = sums.sum(0)
                    row["bias_rel_err"] = round(((bias - want.sum(0)).norm() / want.sum(0).norm()).item(), 6)
                row["ms"] = round(time_graph(fn), 4)
            except Exception as e:  # noqa: BLE001 -- a launch that does not compile is a result too
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""fc2's input gradient through the GELU plus fc1's bias gradient: cuBLASLt's DGELU and a sum, against
vitkit's Triton matmul that sums the columns in its epilogue (speed option dgelu_bias_sum).

    PYTHONPATH=src python scripts/dgelu_bias_sum_bench.py [--shape cifar|b16] [--sweep]

Prints one JSON line per (shape, case): ms per call as CUDA-graph replays (kernel time without host
launches). The sums are compiled as the training step compiles them (Inductor), or taken from
vitkit's column-sum GEMV (speed option bias_grad). --sweep also times the kernel's launch variants.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json

import torch

from vitkit.bench import kernel_names, time_graph
from vitkit.layers import bias_grad, cublaslt, dgelu_matmul

SHAPES = {"cifar": (512 * 65, 384, 1536), "b16": (256 * 197, 768, 3072)}  # tokens, width, hidden


@torch.compile
def _inductor_sum(grad_pre: torch.Tensor) -> torch.Tensor:
    return grad_pre.sum(0)


@torch.compile
def _partials_sum(partials: torch.Tensor) -> torch.Tensor:
    return partials.sum(0).to(torch.bfloat16)


def cublaslt_then_inductor_sum(grad, weight, pre):
    grad_pre = cublaslt.linear_dgelu(grad, weight, pre)
    return grad_pre, _inductor_sum(grad_pre)


def cublaslt_then_gemv(grad, weight, pre):
    grad_pre = cublaslt.linear_dgelu(grad, weight, pre)
    return grad_pre, bias_grad.column_sum(grad_pre)


def triton_with_sums(grad, weight, pre, **launch):
    grad_pre, partials = dgelu_matmul.launch(grad, weight, pre, **launch)
    return grad_pre, _partials_sum(partials)


def variants() -> list[dict]:
    """The op's launches (dgelu_matmul.LAUNCHES), then others around them: tile shape, warps, warp
    specialisation (which does not compile with 4 warps in Triton 3.6), the exact tanh. Three pipeline
    stages throughout: four were slower everywhere in round 12's first sweep."""
    rows = list(dgelu_matmul.LAUNCHES)
    theirs = [{"block_m": dgelu_matmul.BLOCK_M, **config} for config in rows]
    for block_m, block_n, warps, ws in itertools.product((64, 128), (64, 128, 256), (4, 8), (True, False)):
        config = {"block_m": block_m, "block_n": block_n, "warps": warps, "warp_specialize": ws}
        if not (warps == 4 and ws) and not (block_m == 64 and warps == 8) and config not in theirs:
            rows.append(config)
    return rows + [{**dgelu_matmul.LAUNCHES[0], "fast_tanh": False}]


def problem(shape: str) -> tuple[torch.Tensor, ...]:
    """grad, weight, pre of one of SHAPES (bf16, seeded), and grad_pre in fp32 maths."""
    tokens, width, hidden = SHAPES[shape]
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    torch.manual_seed(0)
    grad, pre = torch.randn(tokens, width, **bf), torch.randn(tokens, hidden, **bf)
    weight = torch.randn(width, hidden, **bf) / width**0.5
    return grad, weight, pre, (grad.float() @ weight.float()) * dgelu_matmul.gelu_tanh_grad(pre)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", choices=sorted(SHAPES))
    p.add_argument("--sweep", action="store_true")
    args = p.parse_args()
    for shape in args.shape or sorted(SHAPES):
        grad, weight, pre, want = problem(shape)
        cases = {"cublaslt dgelu": functools.partial(cublaslt.linear_dgelu, grad, weight, pre),
                 "cublaslt dgelu + inductor sum": functools.partial(cublaslt_then_inductor_sum, grad, weight, pre),
                 "cublaslt dgelu + gemv": functools.partial(cublaslt_then_gemv, grad, weight, pre)}
        cases["triton dgelu + partial sums (the op)"] = functools.partial(dgelu_matmul.linear_dgelu_bias_grad, grad,
                                                                          weight, pre)
        for launch in variants() if args.sweep else dgelu_matmul.LAUNCHES:
            cases[f"triton dgelu + partial sums {launch}"] = functools.partial(triton_with_sums, grad, weight, pre,
                                                                               **launch)
        for name, fn in cases.items():
            row = {"shape": shape, "case": name}
            try:
                out = fn()
                grad_pre, bias = out if isinstance(out, tuple) else (out, None)
                row["grad_pre_rel_err"] = round(((grad_pre.float() - want).norm() / want.norm()).item(), 5)
                if bias is not None:
                    row["bias_rel_err"] = round(((bias.float() - want.sum(0)).norm() / want.sum(0).norm()).item(), 5)
                row["ms"] = round(time_graph(fn), 4)
                if "{" not in name:  # not a launch variant: which kernels ran
                    row["kernels"] = kernel_names(fn)
            except Exception as e:  # noqa: BLE001 -- a launch that does not compile is a result too
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

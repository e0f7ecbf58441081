"""The residual add inside the matmul before it (cuBLASLt, beta = 1) against Inductor's add + LayerNorm.

    PYTHONPATH=src python scripts/residual_epilogue_bench.py [--candidates 8]

In a compiled pre-LN block, proj's and fc2's outputs are written, then read back by Inductor's
kernel that adds them to the residual stream and normalises for the next branch: it reads two
(tokens, width) tensors and writes two. With the add in the matmul's epilogue (C = the residual),
the matmul reads one tensor more and writes the new stream, and the LayerNorm reads one and writes
one: one (tokens, width) tensor less per residual add, if the epilogue's read overlaps the matmul.

Prints one JSON line per (layer, case): ms per call as CUDA-graph replays and the kernels launched,
forward only (the backward of an add is the identity either way). --candidates: how many of
cuBLASLt's heuristic algorithms the op times on its first call.
"""

from __future__ import annotations

import argparse
import functools
import json

import torch
import torch.nn.functional as F

from vitkit.bench import kernel_names, time_graph
from vitkit.layers import cublaslt

LAYERS = {  # tokens, width, fan-in
    "b16 proj": (256 * 197, 768, 768), "b16 fc2": (256 * 197, 768, 3072),
    "cifar proj": (512 * 65, 384, 384), "cifar fc2": (512 * 65, 384, 1536),
}


def matmul_bias(a, weight, bias, residual):
    return torch.addmm(bias, a, weight.t())


def add_then_norm(a, weight, bias, residual):
    stream = residual + torch.addmm(bias, a, weight.t())
    return stream, F.layer_norm(stream, stream.shape[-1:], eps=1e-6)


def fused_add_then_norm(a, weight, bias, residual):
    stream = cublaslt.linear_residual(a, weight, bias, residual)
    return stream, F.layer_norm(stream, stream.shape[-1:], eps=1e-6)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--candidates", type=int, default=cublaslt._CANDIDATES)
    cublaslt._CANDIDATES = p.parse_args().candidates
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    for layer, (tokens, width, fan_in) in LAYERS.items():
        torch.manual_seed(0)
        a, residual = torch.randn(tokens, fan_in, **bf), torch.randn(tokens, width, **bf)
        weight, bias = torch.randn(width, fan_in, **bf) / fan_in**0.5, torch.randn(width, **bf)
        ref = add_then_norm(a.float(), weight.float(), bias.float(), residual.float())
        cases = {
            "matmul + bias": matmul_bias,
            "matmul + bias + residual (cuBLASLt, beta 1)": cublaslt.linear_residual,
            "compiled: matmul, then add + LayerNorm": torch.compile(add_then_norm),
            "compiled: matmul with the add, then LayerNorm": torch.compile(fused_add_then_norm),
        }
        for name, fn in cases.items():
            call = functools.partial(fn, a, weight, bias, residual)
            out = call()
            row = {"layer": layer, "case": name, "candidates": cublaslt._CANDIDATES, "ms": round(time_graph(call), 4),
                   "kernels": kernel_names(call)}
            if isinstance(out, tuple):
                row["max_abs_error"] = [round((o.float() - r).abs().max().item(), 4) for o, r in zip(out, ref)]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""One encoder MLP, forward + backward, with and without cuBLASLt's GELU epilogues.

    PYTHONPATH=src python scripts/mlp_epilogue_bench.py [--tokens 50432 --dim 768 --hidden 3072] [--candidates 8]

Defaults are ViT-B/16 at batch 256 (256 x 197 tokens). Prints one JSON line per case: median ms of a
compiled bf16 forward + backward (CUDA events), and for the two cuBLASLt ops alone the op against
the plain matmul it replaces (the op also does the GELU work of an element-wise kernel).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from vitkit.layers import cublaslt
from vitkit.layers.block import Mlp


def median_ms(fn, repeats: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def step_fn(module: nn.Module, x: torch.Tensor, forward):
    compiled = torch.compile(forward)

    def step():
        for p in module.parameters():
            p.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = compiled(x)
        out.backward(torch.ones_like(out))
    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=256 * 197)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--candidates", type=int, default=cublaslt._CANDIDATES,
                   help="cuBLASLt heuristic algorithms timed on each op's first call")
    args = p.parse_args()
    cublaslt._CANDIDATES = args.candidates
    dev = torch.device("cuda")
    torch.manual_seed(0)
    shape = {"tokens": args.tokens, "dim": args.dim, "hidden": args.hidden, "candidates": args.candidates}
    x = torch.randn(args.tokens, args.dim, device=dev, dtype=torch.bfloat16, requires_grad=True)

    mlp = Mlp(args.dim, args.hidden, gelu="tanh").to(dev)
    for name, epilogues in [("mlp inductor (tanh GELU, no epilogues)", False),
                            ("mlp cuBLASLt GELU_AUX_BIAS + DGELU", True)]:
        torch._dynamo.reset()
        mlp.epilogues = epilogues
        print(json.dumps({"case": name, "fwd_bwd_ms": round(median_ms(step_fn(mlp, x, mlp)), 4), **shape}),
              flush=True)

    # the ops alone against the PyTorch calls they replace
    bf = {"device": dev, "dtype": torch.bfloat16}
    xs = x.detach()
    w1, b1 = torch.randn(args.hidden, args.dim, **bf) / 28, torch.randn(args.hidden, **bf)
    w2, grad = torch.randn(args.dim, args.hidden, **bf) / 55, torch.randn(args.tokens, args.dim, **bf)
    pre = torch.addmm(b1, xs, w1.t())
    pairs = [
        ("linear_gelu_aux", lambda: cublaslt.linear_gelu_aux(xs, w1, b1), lambda: torch.addmm(b1, xs, w1.t())),
        ("linear_dgelu", lambda: cublaslt.linear_dgelu(grad, w2, pre), lambda: grad @ w2),
    ]
    for name, op, plain in pairs:
        print(json.dumps({"op": name, "cublaslt_ms": round(median_ms(op), 4),
                          "plain_matmul_ms": round(median_ms(plain), 4), **shape}), flush=True)


if __name__ == "__main__":
    main()

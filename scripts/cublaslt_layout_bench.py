"""cuBLASLt's GELU epilogue matmuls with the weight in either memory layout, against plain matmuls.

    PYTHONPATH=src python scripts/cublaslt_layout_bench.py [--shape cifar --shape b16]

Why: in the CIFAR-scale step the DGELU matmul runs a legacy `sm90_xmma` kernel at about half the speed
of a plain matmul of its shape, while GELU_AUX_BIAS (weight transposed, "TN") gets an `nvjet` kernel
(docs/benchmarks.md section 14). cuBLASLt picks its kernels per layout, so the same maths with the
weight stored the other way round may find a faster kernel. A transposed copy of a weight is small
(width x 4 width) next to the activations.

Prints one JSON line per (shape, case): median ms (CUDA events), the kernels the case launched, and
the largest difference from the reference maths.
"""

from __future__ import annotations

import argparse
import json

import torch

from vitkit.bench import kernel_names, time_graph
from vitkit.layers import cublaslt
from vitkit.layers.linear_gelu import gelu_tanh, gelu_tanh_grad

SHAPES = {"cifar": (512 * 65, 384, 1536), "b16": (256 * 197, 768, 3072)}


def cases(tokens: int, dim: int, hidden: int):
    dev, bf = torch.device("cuda"), {"device": "cuda", "dtype": torch.bfloat16}
    torch.manual_seed(0)
    x = torch.randn(tokens, dim, **bf)
    w1, b1 = torch.randn(hidden, dim, **bf) / dim**0.5, torch.randn(hidden, **bf) * 0.1
    w2, grad = torch.randn(dim, hidden, **bf) / hidden**0.5, torch.randn(tokens, dim, **bf)
    w1t, w2t, grad_t = w1.t().contiguous(), w2.t().contiguous(), grad.t().contiguous()
    pre_ref = torch.addmm(b1, x, w1.t())
    gelu_ref = gelu_tanh(pre_ref.float())
    dgelu_ref = (grad.float() @ w2.float()) * gelu_tanh_grad(pre_ref.float())
    runner = cublaslt._runner(dev)
    out, pre, grad_pre = torch.empty_like(pre_ref), torch.empty_like(pre_ref), torch.empty_like(pre_ref)

    def gelu_aux(transposed: bool):
        # column-major: out^T (hidden x M) = W1 (hidden x dim) @ x^T (dim x M)
        a, transa, lda = (w1t, cublaslt._OP_N, hidden) if transposed else (w1, cublaslt._OP_T, dim)
        return lambda: runner.matmul(a, x, out, m=hidden, n=tokens, k=dim, transa=transa, transb=cublaslt._OP_N,
                                     lda=lda, ldb=dim, ldd=hidden, epilogue="gelu_aux_bias", bias=b1, aux=pre,
                                     aux_ld=hidden)

    def dgelu(transposed: bool, grad_transposed: bool = False):
        # column-major: grad_pre^T (hidden x M) = W2^T (hidden x dim) @ grad^T (dim x M)
        a, transa, lda = (w2t, cublaslt._OP_T, dim) if transposed else (w2, cublaslt._OP_N, hidden)
        b, transb, ldb = (grad_t, cublaslt._OP_T, tokens) if grad_transposed else (grad, cublaslt._OP_N, dim)
        return lambda: runner.matmul(a, b, grad_pre, m=hidden, n=tokens, k=dim, transa=transa,
                                     transb=transb, lda=lda, ldb=ldb, ldd=hidden, epilogue="dgelu",
                                     aux=pre_ref, aux_ld=hidden)

    def dgelu_error():
        return (grad_pre.float() - dgelu_ref).abs().max().item()

    def gelu_error():
        return max((out.float() - gelu_ref).abs().max().item(), (pre.float() - pre_ref.float()).abs().max().item())

    yield "fc1 plain addmm", lambda: torch.addmm(b1, x, w1.t()), None
    yield "fc1 GELU_AUX_BIAS, weight (out, in) [current]", gelu_aux(False), gelu_error
    yield "fc1 GELU_AUX_BIAS, weight (in, out)", gelu_aux(True), gelu_error
    yield "fc2 dX plain mm", lambda: grad @ w2, None
    yield "fc2 dX DGELU, weight (out, in) [current]", dgelu(False), dgelu_error
    yield "fc2 dX DGELU, weight (in, out)", dgelu(True), dgelu_error
    yield "fc2 dX DGELU, weight (out, in), grad (dim, tokens)", dgelu(False, True), dgelu_error
    yield "fc2 dX DGELU, weight (in, out), grad (dim, tokens)", dgelu(True, True), dgelu_error
    yield "transpose grad to (dim, tokens)", lambda: grad.t().contiguous(), None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", choices=sorted(SHAPES))
    args = p.parse_args()
    for shape in args.shape or ["cifar", "b16"]:
        tokens, dim, hidden = SHAPES[shape]
        for name, fn, error in cases(tokens, dim, hidden):
            try:
                ms = time_graph(fn)
                row = {"shape": shape, "case": name, "ms": round(ms, 4), "kernels": kernel_names(fn),
                       "max_abs_error": None if error is None else round(error(), 4)}
            except cublaslt.CublasLtError as exc:
                row = {"shape": shape, "case": name, "error": str(exc)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

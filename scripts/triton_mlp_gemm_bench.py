"""Could Triton matmuls carry the MLP's GELU epilogues faster than cuBLASLt? A measurement, not a
feature: the two epilogue matmuls of a training step's MLP at ViT-B/16's and the CIFAR-scale
model's shapes, timed as

- cuBLAS without any epilogue (torch.mm): the floor the fused kernels should approach;
- vitkit's cuBLASLt calls (vitkit.layers.cublaslt: GELU_AUX_BIAS for fc1's forward, DGELU for fc2's
  input gradient), what speed option mlp_epilogues runs today;
- a Triton matmul with the same epilogues, with pointer loads or TMA descriptors, persistent or
  not, over a few tile sizes.

    python scripts/triton_mlp_gemm_bench.py            # one JSON line per (shape, op, implementation)
    TRITON_INTERPRET=1 python scripts/triton_mlp_gemm_bench.py --check   # correctness at a tiny size, CPU
"""

from __future__ import annotations

import json
import sys

import torch
import triton
import triton.language as tl

from vitkit.layers.linear_gelu import gelu_tanh, gelu_tanh_grad

SHAPES = {"b16_b256": (256 * 197, 768, 3072), "cifar_scale_b512": (512 * 65, 384, 1536)}  # tokens, width, hidden
CONFIGS = [(128, 128, 64, 4, 8), (128, 256, 64, 3, 8), (256, 128, 64, 3, 8), (128, 128, 64, 5, 4),
           (64, 256, 64, 4, 4)]  # BLOCK_M, BLOCK_N, BLOCK_K, stages, warps


@triton.jit
def _epilogue(acc, bias_ptr, aux_ptr, rows, cols, M, N, EPILOGUE: tl.constexpr):
    """EPILOGUE 0: acc; 1: (gelu(acc + bias), acc + bias stored to aux); 2: acc * gelu'(aux)."""
    c = 1.5957691216057308  # 2 sqrt(2 / pi)
    ok = (rows[:, None] < M) & (cols[None, :] < N)
    aux_offsets = rows[:, None].to(tl.int64) * N + cols[None, :]
    if EPILOGUE == 1:
        pre = acc + tl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
        pre = pre.to(aux_ptr.dtype.element_ty)
        tl.store(aux_ptr + aux_offsets, pre, mask=ok)
        h = pre.to(tl.float32)
        return h * tl.sigmoid(c * (h + 0.044715 * h * h * h))
    elif EPILOGUE == 2:
        h = tl.load(aux_ptr + aux_offsets, mask=ok, other=0.0).to(tl.float32)
        s = tl.sigmoid(c * (h + 0.044715 * h * h * h))
        return acc * (s + h * s * (1 - s) * c * (1 + 3 * 0.044715 * h * h))
    else:
        return acc


@triton.jit
def _pointer_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, aux_ptr, M, N, K, stride_bk, stride_bn,
                    EPILOGUE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    group = GROUP_M * tiles_n
    first_m = (pid // group) * GROUP_M
    size_m = min(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % size_m
    pid_n = (pid % group) // size_m
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None].to(tl.int64) * K + ks[None, :]
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for _ in range(0, K, BLOCK_K):  # K is a multiple of BLOCK_K here
        a = tl.load(a_ptrs, mask=rows[:, None] < M, other=0.0)
        b = tl.load(b_ptrs, mask=cols[None, :] < N, other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K * stride_bk
    out = _epilogue(acc, bias_ptr, aux_ptr, rows, cols, M, N, EPILOGUE)
    tl.store(c_ptr + rows[:, None].to(tl.int64) * N + cols[None, :], out.to(c_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


@triton.jit
def _tma_kernel(a_desc, b_desc, c_desc, bias_ptr, aux_ptr, M, N, K, EPILOGUE: tl.constexpr, B_TRANSPOSED: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                PERSISTENT: tl.constexpr, SMS: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    tiles = tiles_m * tiles_n
    group = GROUP_M * tiles_n
    start = tl.program_id(0)
    step = SMS if PERSISTENT else tiles
    for tile in tl.range(start, tiles, step):
        first_m = (tile // group) * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (tile % group) % size_m
        pid_n = (tile % group) // size_m
        off_m, off_n = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            a = a_desc.load([off_m, k])
            if B_TRANSPOSED:  # b is (N, K): a weight used as W^T
                acc = tl.dot(a, b_desc.load([off_n, k]).T, acc)
            else:
                acc = tl.dot(a, b_desc.load([k, off_n]), acc)
        rows = off_m + tl.arange(0, BLOCK_M)
        cols = off_n + tl.arange(0, BLOCK_N)
        out = _epilogue(acc, bias_ptr, aux_ptr, rows, cols, M, N, EPILOGUE)
        c_desc.store([off_m, off_n], out.to(c_desc.dtype))


def run(kind: str, epilogue: int, a, b, bias, aux, config, sms: int):
    """epilogue 1: fc1 forward, a (M, K) x, b (N, K) weight; 2: fc2 input gradient, a (M, K) grad,
    b (K, N) weight, aux (M, N) the pre-activation. Returns the (M, N) output (and fills aux for 1)."""
    block_m, block_n, block_k, stages, warps = config
    M, K = a.shape
    transposed = epilogue == 1
    N = b.shape[0] if transposed else b.shape[1]
    c = a.new_empty(M, N)
    if kind == "pointer":
        stride_bk, stride_bn = (1, K) if transposed else (N, 1)
        grid = (triton.cdiv(M, block_m) * triton.cdiv(N, block_n),)
        _pointer_kernel[grid](a, b, c, bias, aux, M, N, K, stride_bk, stride_bn, EPILOGUE=epilogue,
                              BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8,
                              num_stages=stages, num_warps=warps)
        return c
    from triton.tools.tensor_descriptor import TensorDescriptor

    a_desc = TensorDescriptor.from_tensor(a, [block_m, block_k])
    b_desc = TensorDescriptor.from_tensor(b, [block_n, block_k] if transposed else [block_k, block_n])
    c_desc = TensorDescriptor.from_tensor(c, [block_m, block_n])
    tiles = triton.cdiv(M, block_m) * triton.cdiv(N, block_n)
    persistent = kind == "tma_persistent"
    _tma_kernel[(min(sms, tiles) if persistent else tiles,)](
        a_desc, b_desc, c_desc, bias, aux, M, N, K, EPILOGUE=epilogue, B_TRANSPOSED=transposed,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, PERSISTENT=persistent, SMS=sms,
        num_stages=stages, num_warps=warps)
    return c


def check() -> None:
    """Both epilogues against PyTorch at a small ragged size (Triton's interpreter on CPU)."""
    torch.manual_seed(0)
    M, K, N = 100, 64, 96
    x, w1, b1 = torch.randn(M, K), torch.randn(N, K) / 8, torch.randn(N)
    for kind in ("pointer", "tma", "tma_persistent"):
        aux = torch.empty(M, N)
        out = run(kind, 1, x, w1, b1, aux, (32, 32, 32, 2, 4), 4)
        pre = x @ w1.t() + b1
        assert torch.allclose(aux, pre, atol=1e-4) and torch.allclose(out, gelu_tanh(pre), atol=1e-4)
        grad, w2 = torch.randn(M, K), torch.randn(K, N) / 8
        out = run(kind, 2, grad, w2, b1, pre, (32, 32, 32, 2, 4), 4)
        assert torch.allclose(out, (grad @ w2) * gelu_tanh_grad(pre), atol=1e-4)
    print("ok")


def main() -> None:
    device = torch.device("cuda")
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    for shape, (M, K, N) in SHAPES.items():
        bench_shape(shape, M, K, N, sms)


def bench_shape(shape: str, M: int, K: int, N: int, sms: int) -> None:
    from vitkit.bench import time_steps
    from vitkit.layers import cublaslt

    device = torch.device("cuda")
    x = torch.randn(M, K, device=device, dtype=torch.bfloat16)
    w1 = torch.randn(N, K, device=device, dtype=torch.bfloat16) / K**0.5
    b1 = torch.randn(N, device=device, dtype=torch.bfloat16)
    w2 = torch.randn(K, N, device=device, dtype=torch.bfloat16) / N**0.5  # fc2's weight (out=K, in=N)
    grad = torch.randn(M, K, device=device, dtype=torch.bfloat16)
    g_ref, pre_ref = cublaslt.linear_gelu_aux(x, w1, b1)
    dpre_ref = cublaslt.linear_dgelu(grad, w2, pre_ref)
    flops = 2 * M * N * K
    calls = {
        ("fc1_forward", "cublas_mm_no_epilogue"): lambda: torch.mm(x, w1.t()),
        ("fc1_forward", "cublaslt_gelu_aux_bias"): lambda: cublaslt.linear_gelu_aux(x, w1, b1),
        ("fc2_input_grad", "cublas_mm_no_epilogue"): lambda: torch.mm(grad, w2),
        ("fc2_input_grad", "cublaslt_dgelu"): lambda: cublaslt.linear_dgelu(grad, w2, pre_ref),
    }
    for kind in ("pointer", "tma", "tma_persistent"):
        for config in CONFIGS:
            name = f"triton_{kind}_m{config[0]}_n{config[1]}_k{config[2]}_s{config[3]}_w{config[4]}"
            aux = torch.empty_like(pre_ref)
            calls[("fc1_forward", name)] = lambda kind=kind, config=config, aux=aux: run(
                kind, 1, x, w1, b1, aux, config, sms)
            calls[("fc2_input_grad", name)] = lambda kind=kind, config=config: run(
                kind, 2, grad, w2, b1, pre_ref, config, sms)
    for (op, impl), call in calls.items():
        row = {"shape": shape, "op": op, "impl": impl}
        try:
            out = call()
            if impl.startswith("triton"):
                ref = g_ref if op == "fc1_forward" else dpre_ref
                row["max_err"] = (out.float() - ref.float()).abs().max().item()
            ms = time_steps(call, device, warmup=3, iters=10, repeats=5)
            row.update(ms=round(ms, 4), tflops=round(flops / ms / 1e9, 1))
        except Exception as e:  # noqa: BLE001 -- a tile size that does not compile (shared memory) is a result too
            row["error"] = f"{type(e).__name__}: {str(e)[:160]}"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    check() if "--check" in sys.argv else main()

"""Warp-specialised Triton matmuls with the MLP's GELU epilogues, against cuBLAS(Lt). A measurement.

Round 8 (docs/benchmarks.md section 12) found Triton's matmuls carrying these epilogues at 55-65% of
cuBLASLt's speed, without warp specialisation (Triton 3.6 has it on Hopper: one warp group issues
the TMA loads while the others run the wgmma and the epilogue). This tries it, persistent (the
epilogue of one tile overlaps the loads of the next) or not, with the epilogue in two halves
(smaller register footprint per store), TMA for every operand including the auxiliary matrix.

Epilogues: 0 plain; 1 fc1 forward (gelu(acc + bias), and acc + bias kept as the pre-activation);
2 fc2's input gradient (acc * gelu'(pre)). Every case is timed as 10 calls replayed in one CUDA
graph (kernel time, no host launches).

    PYTHONPATH=src python scripts/triton_ws_gemm_bench.py [--shape cifar] [--sweep quick|full|small] [--epilogue 2]
    TRITON_INTERPRET=1 PYTHONPATH=src python scripts/triton_ws_gemm_bench.py --check   # CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from vitkit.bench import time_graph
from vitkit.layers.linear_gelu import gelu_tanh, gelu_tanh_grad

SHAPES = {"cifar": (512 * 65, 384, 1536), "b16": (256 * 197, 768, 3072)}  # tokens, width, hidden


@triton.jit
def _tanh(u, FAST: tl.constexpr):
    if FAST:  # one MUFU instruction; relative error ~2^-11, below bfloat16's 2^-8
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [u], dtype=tl.float32, is_pure=True,
                                         pack=1)
    else:
        return 2 * tl.sigmoid(2 * u) - 1


@triton.jit
def _epilogue_half(acc, h, c_desc, aux_desc, bias_ptr, off_m, off_n, EPILOGUE: tl.constexpr, HALF_N: tl.constexpr,
                   FAST: tl.constexpr):
    """Stores the epilogue of one (BLOCK_M, HALF_N) piece; h is the pre-activation when EPILOGUE is 2."""
    if EPILOGUE == 1:
        cols = off_n + tl.arange(0, HALF_N)
        pre = acc + tl.load(bias_ptr + cols).to(tl.float32)[None, :]
        aux_desc.store([off_m, off_n], pre.to(aux_desc.dtype))
        t = _tanh(0.7978845608028654 * (pre + 0.044715 * pre * pre * pre), FAST)
        out = 0.5 * pre * (1 + t)
    elif EPILOGUE == 2:
        h = h.to(tl.float32)
        t = _tanh(0.7978845608028654 * (h + 0.044715 * h * h * h), FAST)
        out = acc * (0.5 * (1 + t) + 0.5 * h * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * h * h))
    else:
        out = acc
    c_desc.store([off_m, off_n], out.to(c_desc.dtype))


@triton.jit
def _tile(a_desc, b_desc, c_desc, aux_desc, bias_ptr, tile, tiles_m, tiles_n, K, EPILOGUE: tl.constexpr,
          B_NK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
          GROUP_M: tl.constexpr, SUBTILE: tl.constexpr, INNER_WS: tl.constexpr, AUX_EARLY: tl.constexpr,
          FAST: tl.constexpr):
    group = GROUP_M * tiles_n
    first_m = (tile // group) * GROUP_M
    size_m = min(tiles_m - first_m, GROUP_M)
    off_m = (first_m + (tile % group) % size_m) * BLOCK_M
    off_n = ((tile % group) // size_m) * BLOCK_N
    HALF: tl.constexpr = BLOCK_N // 2 if SUBTILE else BLOCK_N
    h_left = None
    h_right = None
    if EPILOGUE == 2 and AUX_EARLY:  # the pre-activation's load overlaps the main loop
        h_left = aux_desc.load([off_m, off_n])
        if SUBTILE:
            h_right = aux_desc.load([off_m, off_n + HALF])
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k in tl.range(0, tl.cdiv(K, BLOCK_K), warp_specialize=INNER_WS):
        a = a_desc.load([off_m, k * BLOCK_K])
        if B_NK:  # b stored (N, K), as nn.Linear's weight for x W^T
            acc = tl.dot(a, b_desc.load([off_n, k * BLOCK_K]).T, acc)
        else:
            acc = tl.dot(a, b_desc.load([k * BLOCK_K, off_n]), acc)
    if EPILOGUE == 2 and not AUX_EARLY:
        h_left = aux_desc.load([off_m, off_n])
        if SUBTILE:
            h_right = aux_desc.load([off_m, off_n + HALF])
    if SUBTILE:
        left, right = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, HALF)), (0, 2, 1)))
        _epilogue_half(left, h_left, c_desc, aux_desc, bias_ptr, off_m, off_n, EPILOGUE, HALF, FAST)
        _epilogue_half(right, h_right, c_desc, aux_desc, bias_ptr, off_m, off_n + HALF, EPILOGUE, HALF, FAST)
    else:
        _epilogue_half(acc, h_left, c_desc, aux_desc, bias_ptr, off_m, off_n, EPILOGUE, HALF, FAST)


@triton.jit
def _gemm_kernel(a_desc, b_desc, c_desc, aux_desc, bias_ptr, M, N, K, EPILOGUE: tl.constexpr, B_NK: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                 SUBTILE: tl.constexpr, WS: tl.constexpr, PERSISTENT: tl.constexpr, SMS: tl.constexpr,
                 AUX_EARLY: tl.constexpr, FAST: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    if PERSISTENT:
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS, warp_specialize=WS):
            _tile(a_desc, b_desc, c_desc, aux_desc, bias_ptr, tile, tiles_m, tiles_n, K, EPILOGUE, B_NK,
                  BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, SUBTILE, False, AUX_EARLY, FAST)
    else:
        _tile(a_desc, b_desc, c_desc, aux_desc, bias_ptr, tl.program_id(0), tiles_m, tiles_n, K, EPILOGUE, B_NK,
              BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, SUBTILE, WS, AUX_EARLY, FAST)


def gemm(a: torch.Tensor, b: torch.Tensor, epilogue: int, config: dict, *, b_nk: bool, bias=None, aux=None,
         sms: int = 132) -> torch.Tensor:
    """(M, K) a times b ((N, K) if b_nk else (K, N)) with the epilogue; aux (M, N) is written (1) or read (2)."""
    bm, bn, bk = config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]
    M, K = a.shape
    N = b.shape[0] if b_nk else b.shape[1]
    c = a.new_empty(M, N)
    store_n = bn // 2 if config["SUBTILE"] else bn
    a_desc = TensorDescriptor.from_tensor(a, [bm, bk])
    b_desc = TensorDescriptor.from_tensor(b, [bn, bk] if b_nk else [bk, bn])
    c_desc = TensorDescriptor.from_tensor(c, [bm, store_n])
    aux_desc = TensorDescriptor.from_tensor(aux if aux is not None else c, [bm, store_n])
    tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
    grid = (min(sms, tiles) if config["PERSISTENT"] else tiles,)
    _gemm_kernel[grid](a_desc, b_desc, c_desc, aux_desc, bias if bias is not None else c, M, N, K, EPILOGUE=epilogue,
                       B_NK=b_nk, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, SUBTILE=config["SUBTILE"],
                       WS=config["WS"], PERSISTENT=config["PERSISTENT"], SMS=sms,
                       AUX_EARLY=config.get("AUX_EARLY", False), FAST=config.get("FAST", False), num_stages=config["stages"],
                       num_warps=config["warps"])
    return c


def configs(sweep: str, epilogue: int) -> list[dict]:
    """Launches to time.

    full: persistent or not, warp-specialised or not, 128 x (128 | 256) tiles, 3-4 stages, 4-8 warps.
    quick: the ones round 11's first sweep found fastest (non-persistent 128-wide tiles, or persistent
    warp-specialised 256-wide ones), crossed with the epilogue's own switches.
    small: non-persistent tiles of 64-128 x 64-256 with the fast tanh, several programs per SM (one
    program's epilogue then overlaps another's main loop).
    """
    if sweep == "small":
        return [{"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": 64, "stages": stages, "warps": warps, "SUBTILE": subtile,
                 "WS": ws, "PERSISTENT": False, "FAST": True, "AUX_EARLY": False}
                for bm, bn, stages, warps, subtile, ws in itertools.product(
                    (64, 128), (64, 128, 256), (2, 3, 4), (4, 8), (True, False), (True, False))
                if not (bm == 64 and warps == 8)]
    base = []
    for persistent, ws, bn, stages, warps, subtile in itertools.product(
            (True, False), (True, False), (128, 256), (3, 4), (4, 8), (True, False)):
        if sweep == "quick" and (warps == 4 or (persistent and (not ws or bn == 128 or stages == 4))
                                 or (not persistent and bn == 256)):
            continue
        base.append({"BLOCK_M": 128, "BLOCK_N": bn, "BLOCK_K": 64, "stages": stages, "warps": warps,
                     "SUBTILE": subtile, "WS": ws, "PERSISTENT": persistent})
    fast = (False, True) if epilogue else (False,)
    early = (False, True) if epilogue == 2 else (False,)
    return [{**c, "FAST": f, "AUX_EARLY": e} for c in base for f in fast for e in early]


def problems(tokens: int, dim: int, hidden: int, device: str, dtype: torch.dtype = torch.bfloat16):
    """(name, epilogue, a, b, b_nk, bias, aux, reference) for fc1's forward and fc2's input gradient."""
    torch.manual_seed(0)
    bf = {"device": device, "dtype": dtype}
    x, grad = torch.randn(tokens, dim, **bf), torch.randn(tokens, dim, **bf)
    w1, b1 = torch.randn(hidden, dim, **bf) / dim**0.5, torch.randn(hidden, **bf) * 0.1
    w2 = torch.randn(dim, hidden, **bf) / hidden**0.5  # fc2's weight (out, in)
    pre = (x.float() @ w1.float().t() + b1.float())
    return [
        ("fc1 plain", 0, x, w1, True, None, None, pre - b1.float()),
        ("fc1 gelu_aux_bias", 1, x, w1, True, b1, torch.empty_like(x.new_empty(tokens, hidden)), gelu_tanh(pre)),
        ("fc2 dX plain", 0, grad, w2, False, None, None, grad.float() @ w2.float()),
        ("fc2 dX dgelu", 2, grad, w2, False, None, pre.to(dtype),
         (grad.float() @ w2.float()) * gelu_tanh_grad(pre.to(dtype).float())),
    ]


def check() -> None:
    """Every epilogue against float32 maths at a small size (Triton's interpreter on CPU, whose
    descriptors do not handle bfloat16, hence float32)."""
    for name, epilogue, a, b, b_nk, bias, aux, ref in problems(256, 64, 256, "cpu", torch.float32):
        for config in ({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "stages": 2, "warps": 4, "SUBTILE": s,
                        "WS": False, "PERSISTENT": p, "AUX_EARLY": e}
                       for s in (True, False) for p in (True, False) for e in (True, False)):
            out = gemm(a, b, epilogue, config, b_nk=b_nk, bias=bias, aux=aux, sms=3)
            err = (out.float() - ref).abs().max().item()
            assert err < 1e-3, (name, config, err)
            if epilogue == 1:
                assert (aux - (a @ b.t() + bias)).abs().max() < 1e-3
    print("ok")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", choices=sorted(SHAPES))
    p.add_argument("--sweep", choices=("full", "quick", "small"), default="quick", help="see configs()")
    p.add_argument("--epilogue", type=int, action="append", choices=(0, 1, 2), help="only these (default all)")
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    if args.check:
        return check()
    from vitkit.layers import cublaslt

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for shape in args.shape or ["cifar", "b16"]:
        tokens, dim, hidden = SHAPES[shape]
        for name, epilogue, a, b, b_nk, bias, aux, ref in problems(tokens, dim, hidden, "cuda"):
            if args.epilogue and epilogue not in args.epilogue:
                continue
            flops = 2 * tokens * dim * hidden
            peers = {
                0: ("cublas", (lambda a=a, b=b, b_nk=b_nk: a @ (b.t() if b_nk else b))),
                1: ("cublaslt", lambda a=a, b=b, bias=bias: cublaslt.linear_gelu_aux(a, b, bias)),
                2: ("cublaslt", lambda a=a, b=b, aux=aux: cublaslt.linear_dgelu(a, b, aux)),
            }
            impl, fn = peers[epilogue]
            ms = time_graph(fn)
            print(json.dumps({"shape": shape, "case": name, "impl": impl, "ms": round(ms, 4),
                              "tflops": round(flops / ms / 1e9)}), flush=True)
            for config in configs(args.sweep, epilogue):
                row = {"shape": shape, "case": name, "impl": "triton", **config}
                try:
                    out = gemm(a, b, epilogue, config, b_nk=b_nk, bias=bias, aux=aux, sms=sms)
                    row["max_err"] = round((out.float() - ref).abs().max().item(), 4)
                    ms = time_graph(functools.partial(gemm, a, b, epilogue, config, b_nk=b_nk, bias=bias, aux=aux,
                                                    sms=sms))
                    row.update(ms=round(ms, 4), tflops=round(flops / ms / 1e9))
                except Exception as e:  # noqa: BLE001 -- a launch that does not compile is a result too
                    row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

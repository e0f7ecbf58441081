"""fc2's input gradient through the GELU, with fc1's bias gradient summed on the way (speed option
`dgelu_bias_sum`): one Triton matmul in place of cuBLASLt's DGELU epilogue plus a separate sum.

In the MLP's backward pass (vitkit.layers.fused_mlp) the gradient at fc1's output is

    grad_pre = (grad W2) * gelu'(pre)      (tokens, hidden)
    db1 = sum over tokens of grad_pre      (hidden)

cuBLASLt computes the first in one matmul (epilogue DGELU), and then a reduction reads the whole
(tokens, hidden) result back for db1: 102 MB per layer of the CIFAR-scale model at batch 512, 35 us
of an H100's 8.2 ms step per layer (docs/benchmarks.md section 16). cuBLASLt's own DGELU_BGRAD
epilogue does both but runs at a third of the speed (section 10). Here the matmul's epilogue has each
(128-token, column) tile in registers anyway: it sums the tile's columns and writes one fp32 partial
sum per column and token block, a row of partials per block. db1 is the sum of those (tokens / 128 per
column), a read of 1.6 MB. Partial sums rather than atomic adds keep the result deterministic.

At the CIFAR scale the pair took 0.149 ms against 0.170 for cuBLASLt's DGELU plus Inductor's sum on
an H100 (0.142 against 0.153 on an H200; docs/benchmarks.md section 16). With GELU's derivative
factored (section 18) the kernel takes 0.131 ms there on an H200, and 0.51 ms at ViT-B/16's widths
(its third launch) against cuBLASLt + GEMV's 0.58; yet B/16's training step is level with and
without it, which is why this is a switch of its own. On Hopper GPUs the op also times the Gluon
ping-pong form of the same matmul (vitkit.layers.dgelu_pingpong: 0.107-0.117 ms at the CIFAR scale
and 0.43 at B/16's widths on an H200, section 19), which runs one tile's epilogue beside the next
tile's main loop; with it, B/16's training step gains 0.8-2.0% from the switch on the H200.

Summing in fp32 before rounding, db1 is at least as exact as the sum of the rounded grad_pre.
Off the GPU (or without Triton) the op computes the same maths with plain PyTorch ops.
"""

from __future__ import annotations

import functools

import torch

from vitkit.layers import dgelu_pingpong, ops
from vitkit.layers.linear_gelu import gelu_tanh_grad

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CPU installs without Triton: the reference path is used
    triton = None

# Tiles of 128 tokens (the partial sums' block), K steps of 64, three pipeline stages; the epilogue
# runs in two halves of the tile's columns. The op times three launches (and, on Hopper, PINGPONG)
# on its first call per shape (`_best_launch`): 64 columns with one warp group (the CIFAR-scale
# shape's fastest, both GPUs), 128 with two, warp-specialised (one warp group loads), both from
# round 12's sweep (docs/benchmarks.md
# section 16), and 128 with one warp group, ViT-B/16's fastest since the epilogue's cheaper GELU
# derivative (section 18: 0.51 ms against 0.58-0.60 for the other two on an H200).
BLOCK_M, BLOCK_K, STAGES = 128, 64, 3
LAUNCHES = ({"block_n": 64, "warps": 4, "warp_specialize": False}, {"block_n": 128, "warps": 8, "warp_specialize": True},
            {"block_n": 128, "warps": 4, "warp_specialize": False})
PINGPONG = {"pingpong": True}  # the Gluon kernel, a candidate where dgelu_pingpong.usable
_chosen: dict[tuple, dict] = {}

if triton is not None:
    @triton.jit
    def _tanh(u, FAST: tl.constexpr):
        if FAST:  # one MUFU instruction; relative error ~2^-11, below bfloat16's 2^-8
            return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [u], dtype=tl.float32,
                                             is_pure=True, pack=1)
        else:
            return 2 * tl.sigmoid(2 * u) - 1

    @triton.jit
    def _gelu_tanh_grad(x, FAST: tl.constexpr):
        """gelu_tanh'(x) = 0.5 (1 + t) (1 + v (1 - t)) with t = tanh(c (x + a x^3)), v = c x (1 + 3 a x^2):
        the textbook 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2) factored into about half the
        instructions. The epilogue is bound by instruction issue, not memory: this form took the
        CIFAR-scale op from 0.139 to 0.131 ms on an H200 (docs/benchmarks.md section 18)."""
        q = x * x
        t = _tanh(x * (0.7978845608028654 + 0.7978845608028654 * 0.044715 * q), FAST)
        v = x * (0.7978845608028654 + 3 * 0.7978845608028654 * 0.044715 * q)
        return (0.5 + 0.5 * t) * (1 + v * (1 - t))

    @triton.jit
    def _dgelu_store(acc, pre_desc, out_desc, sums_ptr, row_block, off_m, off_n, N,
                     HALF: tl.constexpr, FAST: tl.constexpr):
        """acc * gelu'(pre) for one (BLOCK_M, HALF) piece: stored, and its column sums as fp32 partials,
        in the row of the partials for this block of rows."""
        out = acc * _gelu_tanh_grad(pre_desc.load([off_m, off_n]).to(tl.float32), FAST)
        out_desc.store([off_m, off_n], out.to(out_desc.dtype))
        # rows past the tokens contribute 0: TMA reads zeros there, so acc is 0
        cols = off_n + tl.arange(0, HALF)
        tl.store(sums_ptr + row_block * N + cols, tl.sum(out, axis=0), mask=cols < N)

    @triton.jit
    def _dgelu_kernel(a_desc, b_desc, pre_desc, out_desc, sums_ptr, M, N, K: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                      WARP_SPECIALIZE: tl.constexpr, FAST: tl.constexpr):
        tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        tile = tl.program_id(0)
        group = GROUP_M * tiles_n  # GROUP_M row blocks share the weight's column blocks in L2
        first_m = (tile // group) * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        row_block = first_m + (tile % group) % size_m
        off_m = row_block * BLOCK_M
        off_n = ((tile % group) // size_m) * BLOCK_N
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        # K (the model's width) is a constant: Triton 3.6's interpreter refuses a run-time bound in range()
        for k in tl.range(0, K, BLOCK_K, warp_specialize=WARP_SPECIALIZE):
            acc = tl.dot(a_desc.load([off_m, k]), b_desc.load([k, off_n]), acc)
        HALF: tl.constexpr = BLOCK_N // 2
        left, right = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, HALF)), (0, 2, 1)))
        _dgelu_store(left, pre_desc, out_desc, sums_ptr, row_block, off_m, off_n, N, HALF, FAST)
        _dgelu_store(right, pre_desc, out_desc, sums_ptr, row_block, off_m, off_n + HALF, N, HALF, FAST)


def _reference(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    wide = torch.promote_types(grad.dtype, torch.float32)  # fp32 maths, fp64 stays fp64
    grad_pre = (grad.to(wide) @ weight.to(wide)) * gelu_tanh_grad(pre)
    return grad_pre.to(grad.dtype), grad_pre.sum(0)[None]


def applies(grad: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the Triton kernel runs: CUDA, 16-bit, rows 16-byte aligned as TMA needs."""
    return (triton is not None and grad.is_cuda and grad.dtype in (torch.bfloat16, torch.float16)
            and grad.shape[1] % 8 == 0 and weight.shape[1] % 8 == 0)


def launch(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor, *, block_m: int = BLOCK_M,
           block_n: int = 64, block_k: int = BLOCK_K, stages: int = STAGES, warps: int = 4,
           warp_specialize: bool = False, fast_tanh: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel with an explicit launch (the op picks one of LAUNCHES; tests and benchmarks vary them).
    The defaults are LAUNCHES[0].

    grad (M, N), weight (N, K), pre (M, K), all contiguous -> grad_pre (M, K), and the column sums of
    grad_pre over each block of block_m rows, fp32, (cdiv(M, block_m), K).
    """
    (m_tokens, n), k = grad.shape, weight.shape[1]
    grad_pre = grad.new_empty(m_tokens, k)
    sums = grad.new_empty(triton.cdiv(m_tokens, block_m), k, dtype=torch.float32)
    half = block_n // 2
    a_desc = TensorDescriptor.from_tensor(grad, [block_m, block_k])
    b_desc = TensorDescriptor.from_tensor(weight, [block_k, block_n])
    pre_desc = TensorDescriptor.from_tensor(pre, [block_m, half])
    out_desc = TensorDescriptor.from_tensor(grad_pre, [block_m, half])
    grid = (triton.cdiv(m_tokens, block_m) * triton.cdiv(k, block_n),)
    # matmul dimensions: (M, N) @ (N, K); the kernel calls them M, K (reduced) and N (output columns)
    _dgelu_kernel[grid](a_desc, b_desc, pre_desc, out_desc, sums, m_tokens, k, n, BLOCK_M=block_m, BLOCK_N=block_n,
                        BLOCK_K=block_k, GROUP_M=8, WARP_SPECIALIZE=warp_specialize, FAST=fast_tanh,
                        num_stages=stages, num_warps=warps)
    return grad_pre, sums


def launch_config(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor,
                  config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the op's candidates: a Triton launch of LAUNCHES, or PINGPONG (the Gluon kernel)."""
    if config.get("pingpong"):
        return dgelu_pingpong.launch(grad, weight, pre)
    return launch(grad, weight, pre, **config)


def candidates(grad: torch.Tensor, weight: torch.Tensor) -> tuple[dict, ...]:
    """What `_best_launch` times for these operands: LAUNCHES, and PINGPONG on a Hopper GPU."""
    return LAUNCHES + ((PINGPONG,) if dgelu_pingpong.usable(grad, weight) else ())


def _best_launch(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> dict:
    """The fastest candidate for this problem, timed once per shape on the real operands (median of 3
    after one warm-up each); while a CUDA graph is being captured, nothing can be timed: the first."""
    from vitkit.bench import time_steps  # here: vitkit.bench imports the models, which import this module

    key = (grad.device, grad.dtype, *grad.shape, weight.shape[1])
    if key not in _chosen:
        if grad.is_cuda and torch.cuda.is_current_stream_capturing():
            return LAUNCHES[0]
        _chosen[key] = min(candidates(grad, weight), key=lambda config: time_steps(
            functools.partial(launch_config, grad, weight, pre, config), grad.device, warmup=1, iters=1, repeats=3))
    return _chosen[key]


def _linear_dgelu_sums(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not applies(grad, weight):
        return _reference(grad, weight, pre)
    grad, weight, pre = grad.contiguous(), weight.contiguous(), pre.contiguous()
    return launch_config(grad, weight, pre, _best_launch(grad, weight, pre))


def _fake(grad, weight, pre):
    rows = -(-grad.shape[0] // BLOCK_M) if applies(grad, weight) else 1
    sums_dtype = torch.promote_types(grad.dtype, torch.float32)
    return grad.new_empty(grad.shape[0], weight.shape[1]), grad.new_empty(rows, weight.shape[1], dtype=sums_dtype)


_op = ops.define("linear_dgelu_sums(Tensor grad, Tensor weight, Tensor pre) -> (Tensor, Tensor)",
                 _linear_dgelu_sums, _fake)


def linear_dgelu_bias_grad(grad: torch.Tensor, weight: torch.Tensor,
                           pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grad (M, N), weight (N, K), pre (M, K) -> ((grad weight) * gelu_tanh'(pre), its column sums).

    The gradient at fc1's output and fc1's bias gradient (fp32) in one matmul; the sum of the partial
    rows is left to the caller's graph, where Inductor fuses it with whatever follows.
    """
    grad_pre, partial_sums = _op(grad, weight, pre)
    return grad_pre, partial_sums.sum(0)

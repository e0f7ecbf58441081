"""`dgelu_bias_sum`'s matmul as a Hopper "ping-pong" kernel written in Gluon (Triton's explicit dialect).

The Triton kernel in vitkit.layers.dgelu_matmul computes grad_pre = (grad W) * gelu'(pre) and the
column sums of grad_pre, tile by tile: main loop, then epilogue. On an H200 about 38 of its 131 us
at the CIFAR scale are epilogue work (reading `pre`, GELU's derivative) during which the tensor
cores idle (docs/benchmarks.md section 18). Here two consumer warp groups take turns on the tensor
cores: while one runs a tile's main loop, the other runs the epilogue of its previous tile. A third,
one-warp partition issues the TMA loads of both operands into a ring of shared-memory stages.

Per program (persistent, one per SM) the tiles are taken in order; consumer c owns the program's
tiles c, c + 2, ... . A pair of "turn" barriers orders the main loops: a consumer starts its main
loop once the other has issued its last MMA. Each consumer loads its tile's `pre` by TMA into its
own buffer before its main loop, and after the epilogue stores the result from the same buffer.

Same contract as dgelu_matmul.launch: grad (M, N), weight (N, K), pre (M, K) -> grad_pre (M, K) and
fp32 column sums of grad_pre per block of 128 rows, (cdiv(M, 128), K).

Measured on an H200 (docs/benchmarks.md section 19): 0.107-0.117 ms at the CIFAR scale against
0.132-0.136 for the Triton kernel's best launch; 0.43 at ViT-B/16's widths against 0.51 (cuBLASLt's
DGELU without the sums: 0.43). The layout of the partial sums mattered (one contiguous row per tile:
0.107; one strided store per column: 0.118). Variants that did not pay (the weight's column block kept
in shared memory, stores from registers, two buffers per consumer, per-warp sums) are on branch
round15-pingpong-variants. The epilogue is still not fully hidden: the main loops alone take 0.045 ms.
"""

from __future__ import annotations

import torch

try:
    import triton
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
except ImportError:  # CPU installs without Triton, or a Triton without Gluon
    gluon = None

# tiles of 128 x 128 (the accumulator: 128 fp32 registers per consumer thread), K steps of 64, a ring
# of four stages of both operands (128 KB) beside the two consumers' 32 KB pre/result buffers
BLOCK_M, BLOCK_N, BLOCK_K, STAGES = 128, 128, 64, 4

if gluon is not None:
    @gluon.jit
    def _gelu_tanh_grad(x):
        """gelu_tanh'(x) in the factored form of dgelu_matmul._gelu_tanh_grad, tanh by one MUFU op."""
        q = x * x
        u = x * (0.7978845608028654 + 0.7978845608028654 * 0.044715 * q)
        t = gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [u], dtype=gl.float32, is_pure=True,
                                      pack=1)
        v = x * (0.7978845608028654 + 3 * 0.7978845608028654 * 0.044715 * q)
        return (0.5 + 0.5 * t) * (1 + v * (1 - t))

    @gluon.jit
    def _load_partition(a_desc, b_desc, a_bufs, b_bufs, ready, empty, tiles, tiles_n,
                        KSTEPS: gl.constexpr, STAGES: gl.constexpr):
        """One warp: both operands of every tile of this program, in order, into the ring of stages."""
        block_m: gl.constexpr = a_desc.block_type.shape[0]
        block_k: gl.constexpr = a_desc.block_type.shape[1]
        block_n: gl.constexpr = b_desc.block_type.shape[1]
        nbytes: gl.constexpr = a_desc.block_type.nbytes + b_desc.block_type.nbytes
        count = 0
        for tile in range(gl.program_id(0), tiles, gl.num_programs(0)):
            off_m = (tile // tiles_n) * block_m
            off_n = (tile % tiles_n) * block_n
            for k in gl.static_range(KSTEPS):
                stage = count % STAGES
                # a fresh barrier counts as having completed the phase before phase 0: the first pass waits
                # on parity 1 and goes through
                mbarrier.wait(empty.index(stage), ((count // STAGES) & 1) ^ 1)
                mbarrier.expect(ready.index(stage), nbytes)
                tma.async_copy_global_to_shared(a_desc, [off_m, k * block_k], ready.index(stage), a_bufs.index(stage))
                tma.async_copy_global_to_shared(b_desc, [k * block_k, off_n], ready.index(stage), b_bufs.index(stage))
                count += 1

    @gluon.jit
    def _consumer(a_bufs, b_bufs, ready, empty, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, tiles, tiles_n,
                  n_cols, ROLE: gl.constexpr, KSTEPS: gl.constexpr, STAGES: gl.constexpr):
        """One warp group: the program's tiles ROLE, ROLE + 2, ... ; main loops in turn with the other."""
        block_m: gl.constexpr = pre_desc.block_type.shape[0]
        block_n: gl.constexpr = pre_desc.block_type.shape[1]
        layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, block_n, 16])
        io_buf, io_bar = io_bufs.index(ROLE), io_bars.index(ROLE)
        pid, programs = gl.program_id(0), gl.num_programs(0)
        j = 0  # this consumer's tiles so far (Gluon has no enumerate)
        for tile in range(pid + ROLE * programs, tiles, 2 * programs):
            off_m = (tile // tiles_n) * block_m
            off_n = (tile % tiles_n) * block_n
            # this tile's pre, into the buffer the last tile's result was stored from
            tma.store_wait(0)
            mbarrier.expect(io_bar, pre_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(pre_desc, [off_m, off_n], io_bar, io_buf)
            # the main loop, once the other consumer has issued its own
            mbarrier.wait(turns.index(ROLE), (j & 1) ^ (1 - ROLE))
            first = (2 * j + ROLE) * KSTEPS  # the program's loads before this tile's
            acc = gl.zeros([block_m, block_n], gl.float32, layout)
            for k in gl.static_range(KSTEPS):
                stage = (first + k) % STAGES
                mbarrier.wait(ready.index(stage), ((first + k) // STAGES) & 1)
                acc = warpgroup_mma(a_bufs.index(stage), b_bufs.index(stage), acc, use_acc=k > 0, is_async=True)
                acc = warpgroup_mma_wait(1, deps=(acc,))  # the MMA before this one is done: free its stage
                if k > 0:
                    mbarrier.arrive(empty.index((first + k - 1) % STAGES), count=1)
            mbarrier.arrive(turns.index(1 - ROLE), count=1)
            acc = warpgroup_mma_wait(0, deps=(acc,))
            mbarrier.arrive(empty.index((first + KSTEPS - 1) % STAGES), count=1)
            # the epilogue, beside the other consumer's main loop
            mbarrier.wait(io_bar, j & 1)
            out = acc * _gelu_tanh_grad(io_buf.load(layout).to(gl.float32))
            # the tile's column sums as one contiguous row: 11 us less than a strided store per column
            cols = off_n + gl.arange(0, block_n, layout=gl.SliceLayout(0, layout))
            gl.store(sums_ptr + (tile // tiles_n) * n_cols + cols, gl.sum(out, axis=0), mask=cols < n_cols)
            gl.thread_barrier()  # every warp has read its pre before the buffer takes the result
            io_buf.store(out.to(out_desc.dtype))
            fence_async_shared()
            tma.async_copy_shared_to_global(out_desc, [off_m, off_n], io_buf)
            j += 1  # noqa: SIM113
        tma.store_wait(0)

    @gluon.jit
    def _second_consumer(a_bufs, b_bufs, ready, empty, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, tiles,
                         tiles_n, n_cols, KSTEPS: gl.constexpr, STAGES: gl.constexpr):
        _consumer(a_bufs, b_bufs, ready, empty, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, tiles, tiles_n,
                  n_cols, 1, KSTEPS, STAGES)

    @gluon.jit
    def _pingpong_kernel(a_desc, b_desc, pre_desc, out_desc, sums_ptr, m_rows, n_cols,
                         KSTEPS: gl.constexpr, STAGES: gl.constexpr):
        tiles_n = gl.cdiv(n_cols, pre_desc.block_type.shape[1])
        tiles = gl.cdiv(m_rows, pre_desc.block_type.shape[0]) * tiles_n
        a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES] + a_desc.block_type.shape, a_desc.layout)
        b_bufs = gl.allocate_shared_memory(b_desc.dtype, [STAGES] + b_desc.block_type.shape, b_desc.layout)
        io_bufs = gl.allocate_shared_memory(pre_desc.dtype, [2] + pre_desc.block_type.shape, pre_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        io_bars = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=1)
        for i in gl.static_range(2):
            mbarrier.init(turns.index(i), count=1)
            mbarrier.init(io_bars.index(i), count=1)
        # consumer 0 in the kernel's own 4 warps, consumer 1 in 4 more, the loads in one; registers moved
        # from the loading warp to the consumers (232 each: the accumulator is 128 per thread)
        gl.warp_specialize([
            (_consumer, (a_bufs, b_bufs, ready, empty, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, tiles,
                         tiles_n, n_cols, 0, KSTEPS, STAGES)),
            (_second_consumer, (a_bufs, b_bufs, ready, empty, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr,
                                tiles, tiles_n, n_cols, KSTEPS, STAGES)),
            (_load_partition, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, tiles, tiles_n, KSTEPS, STAGES)),
        ], [4, 1], [232, 40])


def usable(grad: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this kernel can run: Gluon, a Hopper GPU (wgmma), 16-bit operands, the reduced width a
    multiple of 64 and the output's a multiple of 8 (TMA's 16-byte rows)."""
    return (gluon is not None and grad.is_cuda and torch.cuda.get_device_capability(grad.device) == (9, 0)
            and grad.dtype in (torch.bfloat16, torch.float16) and weight.dtype == grad.dtype
            and grad.shape[1] % BLOCK_K == 0 and weight.shape[1] % 8 == 0)


def _descriptor(t: torch.Tensor, block: list[int]) -> TensorDescriptor:
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16)
    return TensorDescriptor.from_tensor(t, block, layout)


def launch(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor, *, block_n: int = BLOCK_N, stages: int = STAGES,
           programs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """grad (M, N), weight (N, K), pre (M, K), contiguous and `usable` -> grad_pre (M, K) and the fp32
    column sums of grad_pre per block of 128 rows, (cdiv(M, 128), K). `programs` defaults to the SM count."""
    (m_rows, n), k = grad.shape, weight.shape[1]
    if n % BLOCK_K:
        raise ValueError(f"the reduced dimension ({n}) must be a multiple of {BLOCK_K}")
    grad_pre = grad.new_empty(m_rows, k)
    sums = grad.new_empty(triton.cdiv(m_rows, BLOCK_M), k, dtype=torch.float32)
    tiles = triton.cdiv(m_rows, BLOCK_M) * triton.cdiv(k, block_n)
    if programs is None:
        programs = torch.cuda.get_device_properties(grad.device).multi_processor_count
    # 168 registers per thread for the 12 warps (3 x 128 threads x 168 fit the SM's 64K), which
    # warp_specialize redistributes: 40 to the loading warp group, 232 to each consumer
    _pingpong_kernel[(min(programs, tiles),)](
        _descriptor(grad, [BLOCK_M, BLOCK_K]), _descriptor(weight, [BLOCK_K, block_n]),
        _descriptor(pre, [BLOCK_M, block_n]), _descriptor(grad_pre, [BLOCK_M, block_n]), sums, m_rows, k,
        KSTEPS=n // BLOCK_K, STAGES=stages, num_warps=4, maxnreg=168)
    return grad_pre, sums

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
fp32 column sums of grad_pre per block of 128 rows, (K, cdiv(M, 128)).
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

BLOCK_M, BLOCK_K = 128, 64

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
    def _tile(index, tiles_n, STATIONARY: gl.constexpr):
        """The program's tile `index` (0, 1, ...) as (row block, column block). Streaming both operands, the programs take turns through the tiles in row-major order.
        With the weight stationary, program p keeps column block p % tiles_n and steps through the row
        blocks from p // tiles_n, in strides of the programs per column block."""
        pid, programs = gl.program_id(0), gl.num_programs(0)
        if STATIONARY:
            groups = programs // tiles_n
            return pid // tiles_n + index * groups, pid % tiles_n
        else:
            tile = pid + index * programs
            return tile // tiles_n, tile % tiles_n

    @gluon.jit
    def _tile_count(tiles_m, tiles_n, STATIONARY: gl.constexpr):
        pid, programs = gl.program_id(0), gl.num_programs(0)
        if STATIONARY:
            groups = programs // tiles_n
            return gl.cdiv(tiles_m - pid // tiles_n, groups)
        else:
            return gl.cdiv(tiles_m * tiles_n - pid, programs)

    @gluon.jit
    def _load_partition(a_desc, b_desc, a_bufs, b_bufs, ready, empty, b_bar, tiles_m, tiles_n,
                        KSTEPS: gl.constexpr, STAGES: gl.constexpr, STATIONARY: gl.constexpr):
        block_m: gl.constexpr = a_desc.block_type.shape[0]
        block_k: gl.constexpr = a_desc.block_type.shape[1]
        block_n: gl.constexpr = b_desc.block_type.shape[1]
        if STATIONARY:  # the program's column block of the weight, once, for every tile
            mbarrier.expect(b_bar, KSTEPS * b_desc.block_type.nbytes)
            for k in gl.static_range(KSTEPS):
                tma.async_copy_global_to_shared(b_desc, [k * block_k, (gl.program_id(0) % tiles_n) * block_n], b_bar,
                                                b_bufs.index(k))
            nbytes: gl.constexpr = a_desc.block_type.nbytes
        else:
            nbytes: gl.constexpr = a_desc.block_type.nbytes + b_desc.block_type.nbytes
        count = 0
        for index in range(_tile_count(tiles_m, tiles_n, STATIONARY)):
            block_row, block_col = _tile(index, tiles_n, STATIONARY)
            for k in gl.static_range(KSTEPS):
                stage = count % STAGES
                # a fresh barrier counts as having completed the phase before phase 0: the first pass waits
                # on parity 1 and goes through
                mbarrier.wait(empty.index(stage), ((count // STAGES) & 1) ^ 1)
                mbarrier.expect(ready.index(stage), nbytes)
                tma.async_copy_global_to_shared(a_desc, [block_row * block_m, k * block_k], ready.index(stage),
                                                a_bufs.index(stage))
                if not STATIONARY:
                    tma.async_copy_global_to_shared(b_desc, [k * block_k, block_col * block_n], ready.index(stage),
                                                    b_bufs.index(stage))
                count += 1

    @gluon.jit
    def _consumer(a_bufs, b_bufs, ready, empty, b_bar, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, out_ptr,
                  m_rows, tiles_m, tiles_n, n_cols, ROLE: gl.constexpr, KSTEPS: gl.constexpr, STAGES: gl.constexpr,
                  STATIONARY: gl.constexpr, PARTS: gl.constexpr, ORDERED: gl.constexpr, SUMS: gl.constexpr,
                  STORE: gl.constexpr, IO: gl.constexpr):
        block_m: gl.constexpr = pre_desc.block_type.shape[0]
        block_n: gl.constexpr = pre_desc.block_type.shape[1]
        layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, block_n, 16])
        cols_layout: gl.constexpr = gl.SliceLayout(0, layout)
        if STATIONARY:
            mbarrier.wait(b_bar, 0)
        j = 0
        for index in range(ROLE, _tile_count(tiles_m, tiles_n, STATIONARY), 2):
            block_row, block_col = _tile(index, tiles_n, STATIONARY)
            off_m = block_row * block_m
            off_n = block_col * block_n
            # this tile's pre, into the buffer a result was stored from IO tiles ago
            io_buf = io_bufs.index(ROLE * IO + j % IO)
            io_bar = io_bars.index(ROLE * IO + j % IO)
            if STORE == 0:
                tma.store_wait(IO - 1)
            else:
                fence_async_shared()  # the last epilogue's reads of the buffer before TMA writes it
            if PARTS < 3:
                mbarrier.expect(io_bar, pre_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(pre_desc, [off_m, off_n], io_bar, io_buf)
            # the main loop, once the other consumer has issued its own
            if ORDERED:
                mbarrier.wait(turns.index(ROLE), (j & 1) ^ (1 - ROLE))
            first = index * KSTEPS  # the program's loads before this tile's
            acc = gl.zeros([block_m, block_n], gl.float32, layout)
            for k in gl.static_range(KSTEPS):
                stage = (first + k) % STAGES
                mbarrier.wait(ready.index(stage), ((first + k) // STAGES) & 1)
                acc = warpgroup_mma(a_bufs.index(stage), b_bufs.index(k if STATIONARY else stage), acc, use_acc=k > 0,
                                    is_async=True)
                acc = warpgroup_mma_wait(1, deps=(acc,))  # the MMA before this one is done: free its stage
                if k > 0:
                    mbarrier.arrive(empty.index((first + k - 1) % STAGES), count=1)
            if ORDERED:
                mbarrier.arrive(turns.index(1 - ROLE), count=1)
            acc = warpgroup_mma_wait(0, deps=(acc,))
            mbarrier.arrive(empty.index((first + KSTEPS - 1) % STAGES), count=1)
            # the epilogue, beside the other consumer's main loop
            if PARTS < 3:
                mbarrier.wait(io_bar, (j // IO) & 1)
                if PARTS < 2:
                    out = acc * _gelu_tanh_grad(io_buf.load(layout).to(gl.float32))
                else:
                    out = acc * io_buf.load(layout).to(gl.float32)
            else:
                out = acc
            cols = off_n + gl.arange(0, block_n, layout=cols_layout)
            if PARTS < 1:
                if SUMS == 0:  # (columns, row blocks)
                    gl.store(sums_ptr + cols * tiles_m + block_row, gl.sum(out, axis=0), mask=cols < n_cols)
                elif SUMS == 1:  # (row blocks, columns): one contiguous row per tile
                    gl.store(sums_ptr + block_row * n_cols + cols, gl.sum(out, axis=0), mask=cols < n_cols)
                else:  # (row blocks x 4, columns): one row per warp, no exchange between the warps
                    per_warp = gl.sum(gl.sum(gl.reshape(out, [2, 4, 16, block_n]), axis=2), axis=0)
                    sum_layout: gl.constexpr = per_warp.type.layout
                    warp = gl.arange(0, 4, layout=gl.SliceLayout(1, sum_layout))
                    warp_cols = off_n + gl.arange(0, block_n, layout=gl.SliceLayout(0, sum_layout))
                    gl.store(sums_ptr + (block_row * 4 + warp[:, None]) * n_cols + warp_cols[None, :], per_warp,
                             mask=(warp_cols < n_cols)[None, :])
            if PARTS < 4:
                if STORE == 0:
                    gl.thread_barrier()  # every warp has read its pre before the buffer takes the result
                    io_buf.store(out.to(out_desc.dtype))
                    fence_async_shared()
                    tma.async_copy_shared_to_global(out_desc, [off_m, off_n], io_buf)
                else:
                    gl.thread_barrier()  # every warp has read its pre before the next tile's arrives
                    rows = off_m + gl.arange(0, block_m, layout=gl.SliceLayout(1, layout))
                    gl.store(out_ptr + rows[:, None] * n_cols + cols[None, :], out.to(out_desc.dtype),
                             mask=(rows < m_rows)[:, None] & (cols < n_cols)[None, :])
            j += 1
        tma.store_wait(0)

    @gluon.jit
    def _worker_consumer(a_bufs, b_bufs, ready, empty, b_bar, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr,
                         out_ptr, m_rows, tiles_m, tiles_n, n_cols, KSTEPS: gl.constexpr, STAGES: gl.constexpr,
                         STATIONARY: gl.constexpr, PARTS: gl.constexpr, ORDERED: gl.constexpr, SUMS: gl.constexpr,
                         STORE: gl.constexpr, IO: gl.constexpr):
        _consumer(a_bufs, b_bufs, ready, empty, b_bar, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr, out_ptr,
                  m_rows, tiles_m, tiles_n, n_cols, 1, KSTEPS, STAGES, STATIONARY, PARTS, ORDERED, SUMS, STORE, IO)

    @gluon.jit
    def _pingpong_kernel(a_desc, b_desc, pre_desc, out_desc, sums_ptr, out_ptr, m_rows, n_cols,
                         KSTEPS: gl.constexpr, STAGES: gl.constexpr, STATIONARY: gl.constexpr,
                         PARTS: gl.constexpr, ORDERED: gl.constexpr, SUMS: gl.constexpr, STORE: gl.constexpr,
                         IO: gl.constexpr):
        block_m: gl.constexpr = pre_desc.block_type.shape[0]
        block_n: gl.constexpr = pre_desc.block_type.shape[1]
        tiles_m = gl.cdiv(m_rows, block_m)
        tiles_n = gl.cdiv(n_cols, block_n)
        a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES] + a_desc.block_type.shape, a_desc.layout)
        b_count: gl.constexpr = KSTEPS if STATIONARY else STAGES
        b_bufs = gl.allocate_shared_memory(b_desc.dtype, [b_count] + b_desc.block_type.shape, b_desc.layout)
        b_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        mbarrier.init(b_bar, count=1)
        io_bufs = gl.allocate_shared_memory(pre_desc.dtype, [2 * IO] + pre_desc.block_type.shape, pre_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        io_bars = gl.allocate_shared_memory(gl.int64, [2 * IO, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=1)
        for i in gl.static_range(2):
            mbarrier.init(turns.index(i), count=1)
        for i in gl.static_range(2 * IO):
            mbarrier.init(io_bars.index(i), count=1)
        gl.warp_specialize([
            (_consumer, (a_bufs, b_bufs, ready, empty, b_bar, turns, pre_desc, out_desc, io_bufs, io_bars, sums_ptr,
                         out_ptr, m_rows, tiles_m, tiles_n, n_cols, 0, KSTEPS, STAGES, STATIONARY, PARTS, ORDERED, SUMS,
                         STORE, IO)),
            (_worker_consumer, (a_bufs, b_bufs, ready, empty, b_bar, turns, pre_desc, out_desc, io_bufs, io_bars,
                                sums_ptr, out_ptr, m_rows, tiles_m, tiles_n, n_cols, KSTEPS, STAGES, STATIONARY, PARTS,
                                ORDERED, SUMS, STORE, IO)),
            (_load_partition, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, b_bar, tiles_m, tiles_n, KSTEPS, STAGES,
                               STATIONARY)),
        ], [4, 1], [232, 40])


def _descriptor(t: torch.Tensor, block: list[int]) -> TensorDescriptor:
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16)
    return TensorDescriptor.from_tensor(t, block, layout)


def launch(grad: torch.Tensor, weight: torch.Tensor, pre: torch.Tensor, *, block_n: int = 128, stages: int = 4,
           stationary: bool = False, programs: int | None = None, maxnreg: int = 168, parts: int = 0,
           ordered: bool = True, sums_layout: int = 0, store: int = 0, io_buffers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """grad (M, N), weight (N, K), pre (M, K), contiguous, 16-bit -> grad_pre (M, K) and the fp32 column
    sums of grad_pre per block of 128 rows, (K, cdiv(M, 128)). `programs` defaults to the SM count.

    `stationary`: each program keeps one column block of the weight in shared memory for all its tiles
    and streams only grad's row blocks, half the operand traffic of loading both per tile (the weight's
    N x block_n block must fit beside the ring: N = 384 does at block_n 128)."""
    (m_rows, n), k = grad.shape, weight.shape[1]
    if n % BLOCK_K:
        raise ValueError(f"the reduced dimension ({n}) must be a multiple of {BLOCK_K}")
    grad_pre = grad.new_empty(m_rows, k)
    row_blocks = triton.cdiv(m_rows, BLOCK_M)
    if sums_layout == 0:
        sums = grad.new_empty(k, row_blocks, dtype=torch.float32)
    else:  # stored row-major, handed back transposed: (K, partial rows) either way
        sums = grad.new_empty(row_blocks * (4 if sums_layout == 2 else 1), k, dtype=torch.float32)
    tiles_m, tiles_n = triton.cdiv(m_rows, BLOCK_M), triton.cdiv(k, block_n)
    if programs is None:
        programs = torch.cuda.get_device_properties(grad.device).multi_processor_count
    if stationary:  # whole groups of one program per column block, each group with a row block at least
        programs = tiles_n * max(1, min(programs // tiles_n, tiles_m))
    else:
        programs = min(programs, tiles_m * tiles_n)
    _pingpong_kernel[(programs,)](
        _descriptor(grad, [BLOCK_M, BLOCK_K]), _descriptor(weight, [BLOCK_K, block_n]),
        _descriptor(pre, [BLOCK_M, block_n]), _descriptor(grad_pre, [BLOCK_M, block_n]), sums, grad_pre, m_rows, k,
        KSTEPS=n // BLOCK_K, STAGES=stages, STATIONARY=stationary, PARTS=parts, ORDERED=ordered, SUMS=sums_layout, STORE=store, IO=io_buffers,
        num_warps=4, maxnreg=maxnreg)
    return grad_pre, (sums if sums_layout == 0 else sums.t())

"""Self-attention for short token sequences (<= 256 tokens): our own Triton kernels, both directions.

Why our own kernel: small ViTs attend over ~100 tokens with heads of 16-64 dimensions. There the
general kernels SDPA offers (cuDNN, flash, memory-efficient) tile for long sequences and large head
dimensions and, around them, the model pays for transposing q, k, v out of the fused QKV projection
and the output back (measured: attention was 1.72 of 5.42 ms per training step of the CIFAR
speedrun model at batch 256, docs/benchmarks.md section 7). When all of one head's keys fit in one
tile, a program can hold them and compute the head whole:

- forward, one program per (query block, image, head): S = q k^T, softmax, O = P v. q, k and v
  are read straight out of the QKV projection's (B, N, 3, heads, head_dim) output and O is written
  as (B, N, heads * head_dim), the layout the output projection wants; only the row log-sum-exp is
  kept for the backward pass (no N x N matrix is stored).
- backward, one program per (image, head): recomputes P block by block, accumulates dK and dV in
  registers and writes dQ, dK, dV into one (B, N, 3, heads, head_dim) gradient, which is exactly
  the QKV projection's output gradient.

A class token plus a power of two of patches (17, 33, 65 tokens: the CIFAR-scale model's 8 x 8 grid)
would pad to tiles of twice the tokens; there the patches' queries and keys form one exact tile and
the class token's query row and key column are computed as vectors next to it (the class-split
kernels), which halved the backward at 65 tokens.

Above 128 tokens (ViT-B/16's 197) one tile of all keys spills registers, so the forward streams the
keys in blocks with an online softmax, and the backward splits (flash-attention-2 style): program j
of an (image, head) computes dK, dV of key block j over all queries, then dQ of query block j over all
keys, after a small kernel has computed rowsum(dO * O) once. Both take the tokens as whole blocks
without masks plus one narrow remainder block, not as blocks padded to a power of two.

Numerics follow flash attention: fp32 scores and softmax, P rounded to the input dtype for P v.
`tile_attention` is a custom op with a registered backward, so it runs inside `torch.compile`d
models and CUDA graphs. Usable for N <= 256 tokens, head_dim in {16, 32, 64, 128}, bf16/fp16 on CUDA, no
attention dropout: `applies()` says whether a call qualifies; vitkit.layers.attention falls back
to SDPA otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from vitkit.layers import ops

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU installs without Triton: the SDPA path is used
    triton = None

MAX_TOKENS = 256
HEAD_DIMS = (16, 32, 64, 128)

if triton is not None:
    @triton.jit
    def _load_rows(ptr, rows, ok, row_stride, dims):
        """(len(rows), len(dims)) tile of a row-major matrix, zeros where `ok` is False (inlined)."""
        return tl.load(ptr + rows[:, None] * row_stride + dims[None, :], mask=ok[:, None], other=0.0)

    @triton.jit
    def _head_offsets(image_head, n_tokens, HEADS: tl.constexpr, HEAD_DIM: tl.constexpr):
        """The width (heads x head_dim) and where the head of program (image x head) starts in the QKV
        projection's (B, N, 3, heads, head_dim) layout and in the (B, N, heads, head_dim) output (inlined)."""
        image = (image_head // HEADS).to(tl.int64)
        head = image_head % HEADS
        width = HEADS * HEAD_DIM
        return width, image * n_tokens * 3 * width + head * HEAD_DIM, image * n_tokens * width + head * HEAD_DIM

    # Whole blocks plus one narrow tail. 197 tokens in blocks of 64 would pad to 256: a fourth block
    # holding 5 tokens, and a fourth step in every loop that is 92% padding (41% of the padded problem
    # empty). The long-sequence kernels run the whole blocks without masks and the remainder as one block
    # of >= 16 rows or keys (tl.dot's smallest): 208 instead of 256. One B/16 layer at batch 256, forward
    # + backward: 0.679 against 0.764 ms (docs/benchmarks.md section 14).
    @triton.jit
    def _load_block(ptr, start, n_tokens, stride, dims, COUNT: tl.constexpr, MASKED: tl.constexpr):
        """(COUNT, len(dims)) rows from `start` of a row-major matrix; MASKED: zeros past n_tokens (inlined)."""
        rows = start + tl.arange(0, COUNT)
        at = ptr + rows[:, None] * stride + dims[None, :]
        if MASKED:
            tile = tl.load(at, mask=(rows < n_tokens)[:, None], other=0.0)
        else:
            tile = tl.load(at)
        return tile

    @triton.jit
    def _store_block(ptr, start, n_tokens, stride, dims, value, COUNT: tl.constexpr, MASKED: tl.constexpr):
        """_load_block's inverse: `value` to COUNT rows from `start`; MASKED: none past n_tokens (inlined)."""
        rows = start + tl.arange(0, COUNT)
        at = ptr + rows[:, None] * stride + dims[None, :]
        value = value.to(ptr.dtype.element_ty)
        if MASKED:
            tl.store(at, value, mask=(rows < n_tokens)[:, None])
        else:
            tl.store(at, value)

    @triton.jit
    def _load_entries(ptr, start, n_tokens, COUNT: tl.constexpr, MASKED: tl.constexpr):
        """COUNT entries of a per-token vector (lse, delta) from `start`; MASKED: zeros past n_tokens."""
        at = start + tl.arange(0, COUNT)
        if MASKED:
            entries = tl.load(ptr + at, mask=at < n_tokens, other=0.0)
        else:
            entries = tl.load(ptr + at)
        return entries

    @triton.jit
    def _online_softmax_step(q, base, start, n_tokens, token_stride, width, dims, log2_scale,
                             row_max, row_sum, acc, COLS: tl.constexpr, MASKED: tl.constexpr):
        """One block of COLS keys from `start` into the running max, sum and P v of q's rows (inlined)."""
        k = _load_block(base + width, start, n_tokens, token_stride, dims, COLS, MASKED)
        v = _load_block(base + 2 * width, start, n_tokens, token_stride, dims, COLS, MASKED)
        s = tl.dot(q, tl.trans(k)) * log2_scale  # base-2 logits
        if MASKED:
            s = tl.where((start + tl.arange(0, COLS) < n_tokens)[None, :], s, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(s, 1))
        rescale = tl.exp2(row_max - new_max)
        p = tl.exp2(s - new_max[:, None])
        row_sum = row_sum * rescale + tl.sum(p, 1)
        acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v)
        return new_max, row_sum, acc

    @triton.jit
    def _forward_rows(base, out, lse, start, n_tokens: tl.constexpr, log2_scale, width, dims,
                      HEAD_DIM: tl.constexpr, ROWS: tl.constexpr, MASKED: tl.constexpr,
                      BLOCK_N: tl.constexpr, TAIL_N: tl.constexpr):
        """Attention of ROWS queries from `start` over every key, written to out and lse (inlined).
        Keys in whole blocks of BLOCK_N and a remainder of TAIL_N; TAIL_N = 0: every block masked (when
        BLOCK_N covers every key, as for short sequences, this is one pass and the rescaling multiplies
        by zero once)."""
        token_stride = 3 * width
        q = _load_block(base, start, n_tokens, token_stride, dims, ROWS, MASKED)
        row_max = tl.full((ROWS,), float("-inf"), dtype=tl.float32)
        row_sum = tl.zeros((ROWS,), dtype=tl.float32)
        acc = tl.zeros((ROWS, HEAD_DIM), dtype=tl.float32)
        if TAIL_N == 0:
            for key in range(0, n_tokens, BLOCK_N):
                row_max, row_sum, acc = _online_softmax_step(q, base, key, n_tokens, token_stride, width, dims,
                                                             log2_scale, row_max, row_sum, acc, BLOCK_N, True)
        else:
            for key in range(0, n_tokens // BLOCK_N * BLOCK_N, BLOCK_N):
                row_max, row_sum, acc = _online_softmax_step(q, base, key, n_tokens, token_stride, width, dims,
                                                             log2_scale, row_max, row_sum, acc, BLOCK_N, False)
            if n_tokens % BLOCK_N != 0:
                row_max, row_sum, acc = _online_softmax_step(q, base, n_tokens // BLOCK_N * BLOCK_N, n_tokens,
                                                             token_stride, width, dims, log2_scale, row_max,
                                                             row_sum, acc, TAIL_N, True)
        _store_block(out, start, n_tokens, width, dims, acc / row_sum[:, None], ROWS, MASKED)
        rows = start + tl.arange(0, ROWS)
        value = row_max + tl.log2(row_sum)
        if MASKED:
            tl.store(lse + rows, value, mask=rows < n_tokens)
        else:
            tl.store(lse + rows, value)

    @triton.jit
    def _tile_attention_forward_kernel(qkv_ptr, out_ptr, lse_ptr, n_tokens: tl.constexpr, scale,
                                       HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                                       BLOCK_N: tl.constexpr, TAIL: tl.constexpr, TAIL_M: tl.constexpr,
                                       TAIL_N: tl.constexpr):
        """Program `block` of an (image, head): query block `block`. TAIL: whole blocks unmasked and the
        last program takes the TAIL_M-row remainder; otherwise every block is masked, which was faster
        for short sequences (101 tokens: 28.8 against 31.4 us, docs/benchmarks.md section 14)."""
        block = tl.program_id(0)
        image_head = tl.program_id(1)
        width, qkv_offset, out_offset = _head_offsets(image_head, n_tokens, HEADS, HEAD_DIM)
        dims = tl.arange(0, HEAD_DIM)
        base, out = qkv_ptr + qkv_offset, out_ptr + out_offset
        lse = lse_ptr + image_head.to(tl.int64) * n_tokens
        log2_scale = scale * 1.4426950408889634
        if not TAIL:
            _forward_rows(base, out, lse, block * BLOCK_M, n_tokens, log2_scale, width, dims, HEAD_DIM,
                          BLOCK_M, True, BLOCK_N, 0)
        elif block < n_tokens // BLOCK_M:
            _forward_rows(base, out, lse, block * BLOCK_M, n_tokens, log2_scale, width, dims, HEAD_DIM,
                          BLOCK_M, False, BLOCK_N, TAIL_N)
        else:
            _forward_rows(base, out, lse, block * BLOCK_M, n_tokens, log2_scale, width, dims, HEAD_DIM,
                          TAIL_M, True, BLOCK_N, TAIL_N)

    @triton.jit
    def _key_grads_step(base, do_base, lse_base, delta_base, k, v, grad_k, grad_v, start, n_tokens,
                        token_stride, width, dims, log2_scale, ROWS: tl.constexpr, MASKED: tl.constexpr):
        """ROWS queries from `start` into dK, dV of one key block (inlined). Padded query rows load q, dO,
        lse and delta as zeros: their p is 1 and their dO and dS are 0, so they add nothing."""
        q = _load_block(base, start, n_tokens, token_stride, dims, ROWS, MASKED)
        do = _load_block(do_base, start, n_tokens, width, dims, ROWS, MASKED)
        lse = _load_entries(lse_base, start, n_tokens, ROWS, MASKED)
        delta = _load_entries(delta_base, start, n_tokens, ROWS, MASKED)
        p = tl.exp2(tl.dot(q, tl.trans(k)) * log2_scale - lse[:, None])
        grad_v = tl.dot(tl.trans(p.to(do.dtype)), do, grad_v)
        grad_s = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        grad_k = tl.dot(tl.trans(grad_s.to(q.dtype)), q, grad_k)
        return grad_k, grad_v

    @triton.jit
    def _query_grad_step(base, q, do, lse, delta, grad_q, start, n_tokens, token_stride, width, dims,
                         log2_scale, COLS: tl.constexpr, MASKED: tl.constexpr):
        """COLS keys from `start` into dQ of one query block (inlined)."""
        k = _load_block(base + width, start, n_tokens, token_stride, dims, COLS, MASKED)
        v = _load_block(base + 2 * width, start, n_tokens, token_stride, dims, COLS, MASKED)
        p = tl.exp2(tl.dot(q, tl.trans(k)) * log2_scale - lse[:, None])
        if MASKED:  # a padded key (k = 0) has p = 2^-lse, which overflows for very negative rows
            p = tl.where((start + tl.arange(0, COLS) < n_tokens)[None, :], p, 0.0)
        grad_s = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        return tl.dot(grad_s.to(k.dtype), k, grad_q)

    @triton.jit
    def _backward_block(base, do_base, grad_base, lse_base, delta_base, own, n_tokens: tl.constexpr,
                        scale, width, dims, HEAD_DIM: tl.constexpr, OWN: tl.constexpr,
                        MASKED: tl.constexpr, STEP: tl.constexpr, TAIL: tl.constexpr):
        """dK, dV of the OWN keys from `own` over every query, then dQ of the OWN queries from `own`
        over every key, each loop in whole blocks of STEP and a remainder of TAIL (inlined). Padded own
        keys or queries compute rows that are not stored."""
        token_stride = 3 * width
        log2_scale = scale * 1.4426950408889634
        # the loops repeat this bound: under Triton 3.6's interpreter a local is an array that range() refuses
        whole = n_tokens // STEP * STEP
        k = _load_block(base + width, own, n_tokens, token_stride, dims, OWN, MASKED)
        v = _load_block(base + 2 * width, own, n_tokens, token_stride, dims, OWN, MASKED)
        grad_k = tl.zeros((OWN, HEAD_DIM), dtype=tl.float32)
        grad_v = tl.zeros((OWN, HEAD_DIM), dtype=tl.float32)
        for start in range(0, n_tokens // STEP * STEP, STEP):
            grad_k, grad_v = _key_grads_step(base, do_base, lse_base, delta_base, k, v, grad_k, grad_v, start,
                                             n_tokens, token_stride, width, dims, log2_scale, STEP, False)
        if n_tokens % STEP != 0:
            grad_k, grad_v = _key_grads_step(base, do_base, lse_base, delta_base, k, v, grad_k, grad_v, whole,
                                             n_tokens, token_stride, width, dims, log2_scale, TAIL, True)
        _store_block(grad_base + width, own, n_tokens, token_stride, dims, grad_k * scale, OWN, MASKED)
        _store_block(grad_base + 2 * width, own, n_tokens, token_stride, dims, grad_v, OWN, MASKED)

        q = _load_block(base, own, n_tokens, token_stride, dims, OWN, MASKED)
        do = _load_block(do_base, own, n_tokens, width, dims, OWN, MASKED)
        lse = _load_entries(lse_base, own, n_tokens, OWN, MASKED)
        delta = _load_entries(delta_base, own, n_tokens, OWN, MASKED)
        grad_q = tl.zeros((OWN, HEAD_DIM), dtype=tl.float32)
        for start in range(0, n_tokens // STEP * STEP, STEP):
            grad_q = _query_grad_step(base, q, do, lse, delta, grad_q, start, n_tokens, token_stride, width,
                                      dims, log2_scale, STEP, False)
        if n_tokens % STEP != 0:
            grad_q = _query_grad_step(base, q, do, lse, delta, grad_q, whole, n_tokens, token_stride, width,
                                      dims, log2_scale, TAIL, True)
        _store_block(grad_base, own, n_tokens, token_stride, dims, grad_q * scale, OWN, MASKED)

    @triton.jit
    def _tile_attention_backward_split_kernel(qkv_ptr, grad_out_ptr, lse_ptr, grad_qkv_ptr, delta_ptr,
                                              n_tokens: tl.constexpr, scale, HEADS: tl.constexpr,
                                              HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, TAIL_BLOCK: tl.constexpr,
                                              STEP: tl.constexpr, TAIL_STEP: tl.constexpr):
        """Backward for longer sequences (flash-attention-2 style): program `block` of an (image, head)
        computes dK and dV of key block `block` looping over query blocks, then dQ of query block
        `block` looping over key blocks, so no program holds all keys and no dQ is summed atomically;
        the last program owns the TAIL_BLOCK remainder. delta = rowsum(dO * O) comes precomputed
        (_tile_attention_delta_kernel): computed in the loop instead, the backward of a B/16 layer took
        697 us instead of 605."""
        block = tl.program_id(0)
        image_head = tl.program_id(1)
        width, offset, out_offset = _head_offsets(image_head, n_tokens, HEADS, HEAD_DIM)
        dims = tl.arange(0, HEAD_DIM)
        base, do_base, grad_base = qkv_ptr + offset, grad_out_ptr + out_offset, grad_qkv_ptr + offset
        lse_base = lse_ptr + image_head.to(tl.int64) * n_tokens
        delta_base = delta_ptr + image_head.to(tl.int64) * n_tokens
        if block < n_tokens // BLOCK:
            _backward_block(base, do_base, grad_base, lse_base, delta_base, block * BLOCK, n_tokens, scale, width,
                            dims, HEAD_DIM, BLOCK, False, STEP, TAIL_STEP)
        else:
            _backward_block(base, do_base, grad_base, lse_base, delta_base, block * BLOCK, n_tokens, scale, width,
                            dims, HEAD_DIM, TAIL_BLOCK, True, STEP, TAIL_STEP)

    @triton.jit
    def _tile_attention_backward_kernel(qkv_ptr, out_ptr, grad_out_ptr, lse_ptr, grad_qkv_ptr,
                                        n_tokens: tl.constexpr, scale,
                                        HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        image_head = tl.program_id(0)
        width, offset, out_base = _head_offsets(image_head, n_tokens, HEADS, HEAD_DIM)
        token_stride = 3 * width
        cols = tl.arange(0, BLOCK_N)
        dims = tl.arange(0, HEAD_DIM)
        col_ok = cols < n_tokens

        base = qkv_ptr + offset
        grad_base = grad_qkv_ptr + offset
        k = _load_rows(base + width, cols, col_ok, token_stride, dims)
        v = _load_rows(base + 2 * width, cols, col_ok, token_stride, dims)
        grad_k = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)
        grad_v = tl.zeros((BLOCK_N, HEAD_DIM), dtype=tl.float32)

        for start in range(0, n_tokens, BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            row_ok = rows < n_tokens
            q = _load_rows(base, rows, row_ok, token_stride, dims)
            o = _load_rows(out_ptr + out_base, rows, row_ok, width, dims)
            do = _load_rows(grad_out_ptr + out_base, rows, row_ok, width, dims)
            lse = tl.load(lse_ptr + image_head.to(tl.int64) * n_tokens + rows, mask=row_ok, other=0.0)

            s = tl.dot(q, tl.trans(k)) * (scale * 1.4426950408889634)
            p = tl.exp2(s - lse[:, None])
            p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)  # (BLOCK_M, BLOCK_N) softmax
            grad_v += tl.dot(tl.trans(p.to(do.dtype)), do)
            grad_p = tl.dot(do, tl.trans(v))
            delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)  # rowsum(dO * O) = rowsum(P * dP)
            grad_s = p * (grad_p - delta[:, None])
            grad_q = tl.dot(grad_s.to(k.dtype), k) * scale
            tl.store(grad_base + rows[:, None] * token_stride + dims[None, :],
                     grad_q.to(grad_qkv_ptr.dtype.element_ty), mask=row_ok[:, None])
            grad_k += tl.dot(tl.trans(grad_s.to(q.dtype)), q)

        grad_k = grad_k * scale
        tl.store(grad_base + width + cols[:, None] * token_stride + dims[None, :],
                 grad_k.to(grad_qkv_ptr.dtype.element_ty), mask=col_ok[:, None])
        tl.store(grad_base + 2 * width + cols[:, None] * token_stride + dims[None, :],
                 grad_v.to(grad_qkv_ptr.dtype.element_ty), mask=col_ok[:, None])

    @triton.jit
    def _tile_attention_delta_kernel(out_ptr, grad_out_ptr, delta_ptr, n_rows, HEADS: tl.constexpr,
                                     HEAD_DIM: tl.constexpr, n_tokens: tl.constexpr, ROWS: tl.constexpr):
        """delta = rowsum(dO * O) per (image, token, head), written as (B, heads, N) like the lse."""
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # rows of (B * N * heads, head_dim)
        ok = rows < n_rows
        dims = tl.arange(0, HEAD_DIM)
        at = rows.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        o = tl.load(out_ptr + at, mask=ok[:, None], other=0.0).to(tl.float32)
        do = tl.load(grad_out_ptr + at, mask=ok[:, None], other=0.0).to(tl.float32)
        head = rows % HEADS
        token = (rows // HEADS) % n_tokens
        image = rows // (HEADS * n_tokens)
        tl.store(delta_ptr + (image.to(tl.int64) * HEADS + head) * n_tokens + token, tl.sum(o * do, 1),
                 mask=ok)

    @triton.jit
    def _load_vector(ptr, dims):
        """One token's (HEAD_DIM,) row in fp32 (inlined)."""
        return tl.load(ptr + dims).to(tl.float32)

    @triton.jit
    def _class_split_qkv(base, width, tile, dims):
        """The patches' q, k, v tiles (input dtype) and the class token's q, k, v (fp32) (inlined)."""
        return (tl.load(base + tile), tl.load(base + width + tile), tl.load(base + 2 * width + tile),
                _load_vector(base, dims), _load_vector(base + width, dims), _load_vector(base + 2 * width, dims))

    @triton.jit
    def _class_split_forward_kernel(qkv_ptr, out_ptr, lse_ptr, scale, HEADS: tl.constexpr,
                                    HEAD_DIM: tl.constexpr, PATCHES: tl.constexpr):
        """One program per (image, head) of 1 + PATCHES tokens (class token first, PATCHES a power of
        two): the patches' queries and keys as one PATCHES-square tile, the class token's query row
        and key column as vectors, so no tile is padded (65 tokens would otherwise take 128-key
        tiles and a second query block holding one row)."""
        image_head = tl.program_id(0)
        width, qkv_offset, out_offset = _head_offsets(image_head, PATCHES + 1, HEADS, HEAD_DIM)
        rows = 1 + tl.arange(0, PATCHES)
        dims = tl.arange(0, HEAD_DIM)
        q, k, v, q0, k0, v0 = _class_split_qkv(qkv_ptr + qkv_offset, width, rows[:, None] * 3 * width + dims[None, :],
                                               dims)
        log2_scale = scale * 1.4426950408889634

        # the patches' queries against the patch keys (tile) and the class key (column)
        s = tl.dot(q, tl.trans(k)) * log2_scale  # (PATCHES, PATCHES), base-2 logits
        s0 = tl.sum(q.to(tl.float32) * k0[None, :], 1) * log2_scale
        row_max = tl.maximum(tl.max(s, 1), s0)
        p = tl.exp2(s - row_max[:, None])
        p0 = tl.exp2(s0 - row_max)
        row_sum = tl.sum(p, 1) + p0
        o = (tl.dot(p.to(v.dtype), v) + p0[:, None] * v0[None, :]) / row_sum[:, None]
        out = out_ptr + out_offset
        tl.store(out + rows[:, None] * width + dims[None, :], o.to(out_ptr.dtype.element_ty))
        lse = lse_ptr + image_head.to(tl.int64) * (PATCHES + 1)
        tl.store(lse + rows, row_max + tl.log2(row_sum))

        # the class token's query against every key
        sc = tl.sum(k.to(tl.float32) * q0[None, :], 1) * log2_scale  # (PATCHES,)
        sc0 = tl.sum(q0 * k0, 0) * log2_scale
        max_c = tl.maximum(tl.max(sc, 0), sc0)
        pc = tl.exp2(sc - max_c)
        pc0 = tl.exp2(sc0 - max_c)
        sum_c = tl.sum(pc, 0) + pc0
        oc = (tl.sum(pc[:, None] * v.to(tl.float32), 0) + pc0 * v0) / sum_c
        tl.store(out + dims, oc.to(out_ptr.dtype.element_ty))
        tl.store(lse, max_c + tl.log2(sum_c))

    @triton.jit
    def _class_split_backward_kernel(qkv_ptr, out_ptr, grad_out_ptr, lse_ptr, grad_qkv_ptr, scale,
                                     HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, PATCHES: tl.constexpr):
        """Backward of _class_split_forward_kernel, one program per (image, head): P and dP recomputed
        as the patch tile plus the class token's row and column, dQ, dK, dV written in the QKV layout."""
        image_head = tl.program_id(0)
        width, qkv_offset, out_offset = _head_offsets(image_head, PATCHES + 1, HEADS, HEAD_DIM)
        grad_base = grad_qkv_ptr + qkv_offset
        rows = 1 + tl.arange(0, PATCHES)
        dims = tl.arange(0, HEAD_DIM)
        tile = rows[:, None] * 3 * width + dims[None, :]
        out_tile = rows[:, None] * width + dims[None, :]
        q, k, v, q0, k0, v0 = _class_split_qkv(qkv_ptr + qkv_offset, width, tile, dims)
        o, do = tl.load(out_ptr + out_offset + out_tile), tl.load(grad_out_ptr + out_offset + out_tile)
        o0, do0 = _load_vector(out_ptr + out_offset, dims), _load_vector(grad_out_ptr + out_offset, dims)
        lse_base = lse_ptr + image_head.to(tl.int64) * (PATCHES + 1)
        lse, lse0 = tl.load(lse_base + rows), tl.load(lse_base)
        log2_scale = scale * 1.4426950408889634

        # softmax rows: patches (tile p, class column p0) and the class token (row pc, corner pc0)
        p = tl.exp2(tl.dot(q, tl.trans(k)) * log2_scale - lse[:, None])
        p0 = tl.exp2(tl.sum(q.to(tl.float32) * k0[None, :], 1) * log2_scale - lse)
        pc = tl.exp2(tl.sum(k.to(tl.float32) * q0[None, :], 1) * log2_scale - lse0)
        pc0 = tl.exp2(tl.sum(q0 * k0, 0) * log2_scale - lse0)
        do_f = do.to(tl.float32)
        delta = tl.sum(do_f * o.to(tl.float32), 1)  # rowsum(dO * O) = rowsum(P * dP)
        delta0 = tl.sum(do0 * o0, 0)

        grad_v = tl.dot(tl.trans(p.to(do.dtype)), do) + pc[:, None] * do0[None, :]
        grad_v0 = tl.sum(p0[:, None] * do_f, 0) + pc0 * do0
        grad_s = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        grad_s0 = p0 * (tl.sum(do_f * v0[None, :], 1) - delta)
        grad_sc = pc * (tl.sum(v.to(tl.float32) * do0[None, :], 1) - delta0)
        grad_sc0 = pc0 * (tl.sum(do0 * v0, 0) - delta0)

        grad_q = tl.dot(grad_s.to(k.dtype), k) + grad_s0[:, None] * k0[None, :]
        grad_q0 = tl.sum(grad_sc[:, None] * k.to(tl.float32), 0) + grad_sc0 * k0
        grad_k = tl.dot(tl.trans(grad_s.to(q.dtype)), q) + grad_sc[:, None] * q0[None, :]
        grad_k0 = tl.sum(grad_s0[:, None] * q.to(tl.float32), 0) + grad_sc0 * q0
        dtype = grad_qkv_ptr.dtype.element_ty
        tl.store(grad_base + tile, (grad_q * scale).to(dtype))
        tl.store(grad_base + width + tile, (grad_k * scale).to(dtype))
        tl.store(grad_base + 2 * width + tile, grad_v.to(dtype))
        tl.store(grad_base + dims, (grad_q0 * scale).to(dtype))
        tl.store(grad_base + width + dims, (grad_k0 * scale).to(dtype))
        tl.store(grad_base + 2 * width + dims, grad_v0.to(dtype))


def available() -> bool:
    """True when Triton is importable (the kernels also need a CUDA device, or TRITON_INTERPRET=1)."""
    return triton is not None


def shape_fits(n_tokens: int, head_dim: int) -> bool:
    """Whether a (tokens, head_dim) attention fits the one-tile kernel."""
    return n_tokens <= MAX_TOKENS and head_dim in HEAD_DIMS


def applies(qkv: torch.Tensor, head_dim: int, dropout_p: float, dtype: torch.dtype | None = None) -> bool:
    """Whether this call can take the kernel: CUDA, half precision, short sequence, no dropout.

    qkv: (B, N, ...), the QKV projection's output or its input; dtype: the one the kernel will see
    (default qkv's; the autocast dtype for an input that a matmul will cast)."""
    return (triton is not None and qkv.is_cuda and (dtype or qkv.dtype) in (torch.bfloat16, torch.float16)
            and dropout_p == 0.0 and shape_fits(qkv.shape[1], head_dim))


class Launch(NamedTuple):
    """Tile sizes and warps of both kernels for one shape."""

    block_m: int  # forward: queries per program
    block_n: int  # forward: keys per step of the online softmax (all of them for short sequences)
    warps: int
    split_backward: bool  # False: one program per (image, head) holds every key; True: the split kernel
    backward_block: int  # one tile: queries per step; split: the program's own key / query block
    backward_step: int  # one tile: all keys; split: the block it loops over
    backward_warps: int
    forward_stages: int | None = None  # software-pipelining depth (None: Triton's default)
    backward_stages: int | None = None
    class_split: bool = False  # 1 + 2^k tokens: patches as one tile, the class token as vectors
    tail: bool = False  # forward in whole blocks unmasked + one narrow remainder (the split backward always is)


def tail_size(n_tokens: int, block: int) -> int:
    """Rows of the remainder block after n_tokens // block whole ones (>= 16, tl.dot's smallest)."""
    return max(16, triton.next_power_of_2(n_tokens % block)) if n_tokens % block else block


def class_split_fits(n_tokens: int) -> bool:
    """Whether the tokens are a class token plus a power-of-two number of patches that one tile holds."""
    return n_tokens - 1 in (16, 32, 64)


def launch(n_tokens: int, head_dim: int) -> Launch:
    """Launch sizes, measured on an H200 (scripts/tile_attention_bench.py).

    Up to 128 keys everything fits one tile: query blocks of 64 with 4 warps were fastest for head_dim
    16, 32 and 64, and one backward program per (image, head) holding all keys beats splitting. Above
    128 keys (ViT-B/16's 197) a tile of all keys spills registers (forward 458 us vs cuDNN's 175 for
    one B/16 layer at batch 256), so the forward streams keys in blocks of 32 (179 us) and the
    backward uses the split kernel with blocks of 64 and the delta pass (fwd + bwd 785 us, cuDNN
    with its transposes 887; docs/benchmarks.md section 9). Both run whole blocks unmasked and the
    remainder as one narrow block (`tail`): 164 and 679 us against 176 and 764 padded to 256 keys
    (section 14; blocks of 32 or 128, 8 warps and 1-2 stages were slower). A class token plus 16, 32
    or 64 patches takes the class-split kernels: at 65 tokens (6 heads of 64, batch 512) backward 0.099 ms against
    the padded kernel's 0.175, forward 0.041 against 0.052 (section 11; 8 warps were slower).
    """
    keys = max(16, triton.next_power_of_2(n_tokens))
    if keys <= 128:
        return Launch(min(64, keys), keys, 4, False, min(64, keys), keys, 4, class_split=class_split_fits(n_tokens))
    return Launch(64, 32, 4, True, 64, 64, 4, tail=True)


def _check(qkv: torch.Tensor, num_heads: int) -> tuple[int, int, int]:
    if qkv.ndim != 3 or qkv.shape[2] % (3 * num_heads):
        raise ValueError(f"tile_attention wants the fused QKV output (B, N, 3 * heads * head_dim), got "
                         f"{tuple(qkv.shape)} for {num_heads} heads")
    batch, n_tokens, three_width = qkv.shape
    head_dim = three_width // (3 * num_heads)
    if not shape_fits(n_tokens, head_dim):
        raise ValueError(f"tile_attention handles <= {MAX_TOKENS} tokens and head_dim in {HEAD_DIMS}, "
                         f"got {n_tokens} tokens of head_dim {head_dim}; use SDPA")
    return batch, n_tokens, head_dim


def _forward(qkv: torch.Tensor, num_heads: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, n_tokens, head_dim = _check(qkv, num_heads)
    qkv = qkv.contiguous()
    out = qkv.new_empty(batch, n_tokens, num_heads * head_dim)  # (B, N, heads * head_dim)
    lse = torch.empty(batch, num_heads, n_tokens, device=qkv.device, dtype=torch.float32)
    cfg = launch(n_tokens, head_dim)
    if cfg.class_split:
        _class_split_forward_kernel[(batch * num_heads,)](qkv, out, lse, scale, HEADS=num_heads, HEAD_DIM=head_dim,
                                                          PATCHES=n_tokens - 1, num_warps=cfg.warps)
        return out, lse
    grid = (triton.cdiv(n_tokens, cfg.block_m), batch * num_heads)
    stages = {} if cfg.forward_stages is None else {"num_stages": cfg.forward_stages}
    _tile_attention_forward_kernel[grid](qkv, out, lse, n_tokens, scale, HEADS=num_heads, HEAD_DIM=head_dim,
                                         BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, TAIL=cfg.tail,
                                         TAIL_M=tail_size(n_tokens, cfg.block_m), TAIL_N=tail_size(n_tokens, cfg.block_n),
                                         num_warps=cfg.warps, **stages)
    return out, lse


def _backward(qkv: torch.Tensor, out: torch.Tensor, grad_out: torch.Tensor, lse: torch.Tensor,
              num_heads: int, scale: float) -> torch.Tensor:
    batch, n_tokens, head_dim = _check(qkv, num_heads)
    qkv, out, grad_out = qkv.contiguous(), out.contiguous(), grad_out.contiguous()
    grad_qkv = torch.empty_like(qkv)  # (B, N, 3, heads, head_dim), every element written by the kernel
    cfg = launch(n_tokens, head_dim)
    stages = {} if cfg.backward_stages is None else {"num_stages": cfg.backward_stages}
    if cfg.class_split:
        _class_split_backward_kernel[(batch * num_heads,)](qkv, out, grad_out, lse, grad_qkv, scale, HEADS=num_heads,
                                                           HEAD_DIM=head_dim, PATCHES=n_tokens - 1,
                                                           num_warps=cfg.backward_warps)
    elif cfg.split_backward:
        delta = torch.empty_like(lse)
        n_rows, rows = batch * n_tokens * num_heads, 64
        _tile_attention_delta_kernel[(triton.cdiv(n_rows, rows),)](
            out, grad_out, delta, n_rows, HEADS=num_heads, HEAD_DIM=head_dim, n_tokens=n_tokens, ROWS=rows)
        grid = (triton.cdiv(n_tokens, cfg.backward_block), batch * num_heads)
        _tile_attention_backward_split_kernel[grid](qkv, grad_out, lse, grad_qkv, delta, n_tokens, scale,
                                                    HEADS=num_heads, HEAD_DIM=head_dim, BLOCK=cfg.backward_block,
                                                    TAIL_BLOCK=tail_size(n_tokens, cfg.backward_block),
                                                    STEP=cfg.backward_step,
                                                    TAIL_STEP=tail_size(n_tokens, cfg.backward_step),
                                                    num_warps=cfg.backward_warps, **stages)
    else:
        _tile_attention_backward_kernel[(batch * num_heads,)](qkv, out, grad_out, lse, grad_qkv, n_tokens,
                                                              scale, HEADS=num_heads, HEAD_DIM=head_dim,
                                                              BLOCK_M=cfg.backward_block,
                                                              BLOCK_N=cfg.backward_step,
                                                              num_warps=cfg.backward_warps, **stages)
    return grad_qkv


if triton is not None:
    # Opaque ops (vitkit.layers.ops) rather than torch.library.triton_op: traced into a compiled graph,
    # the same kernels ran 2.9-5.8x slower than launched by Triton itself (H200, PyTorch 2.11, speedrun
    # model, per step: forward 1.49 vs 0.26 ms, backward 1.85 vs 0.63 ms), so torch.compile only sees
    # their shapes.
    def _forward_fake(qkv: torch.Tensor, num_heads: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_tokens, three_width = qkv.shape
        return (qkv.new_empty(batch, n_tokens, three_width // 3),
                qkv.new_empty(batch, num_heads, n_tokens, dtype=torch.float32))

    _forward_op = ops.define("tile_attention_forward(Tensor qkv, int num_heads, float scale) -> (Tensor, Tensor)",
                             _forward, _forward_fake)
    _backward_op = ops.define("tile_attention_backward(Tensor qkv, Tensor out, Tensor grad_out, Tensor lse, "
                              "int num_heads, float scale) -> Tensor", _backward,
                              lambda qkv, out, grad_out, lse, num_heads, scale: torch.empty_like(qkv))

    def _setup_context(ctx, inputs, output) -> None:
        qkv, num_heads, scale = inputs
        out, lse = output
        ctx.save_for_backward(qkv, out, lse)
        ctx.num_heads, ctx.scale = num_heads, scale

    def _grad(ctx, grad_out: torch.Tensor, _grad_lse: torch.Tensor):
        qkv, out, lse = ctx.saved_tensors
        return _backward_op(qkv, out, grad_out, lse, ctx.num_heads, ctx.scale), None, None

    ops.register_autograd(_forward_op, _grad, setup_context=_setup_context)
    forward, backward = _forward_op, _backward_op  # for callers with their own autograd (vitkit.layers.qkv_attention)


def tile_attention(qkv: torch.Tensor, num_heads: int, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for every head, from the fused QKV projection's output.

    qkv: (B, N, 3 * heads * head_dim), laid out as (B, N, 3, heads, head_dim) like `Attention.qkv`'s
    output. Returns (B, N, heads * head_dim). scale defaults to head_dim ** -0.5.
    """
    if triton is None:
        raise RuntimeError("tile_attention needs Triton (pip install triton); use SDPA on this machine")
    _, _, head_dim = _check(qkv, num_heads)
    scale = head_dim**-0.5 if scale is None else float(scale)
    return _forward_op(qkv, num_heads, scale)[0]

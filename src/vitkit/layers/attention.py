"""Multi-head self-attention with one switch: fused SDPA by default, explicit weights on request."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import sdpa_kernel

from vitkit.layers import bias_grad, qkv_attention, tile_attention
from vitkit.layers.norm import LayerNorm, folded_parameters


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection (one matmul instead of three)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        self.sdpa_backends: list | None = None  # None: let PyTorch choose; see vitkit.speed
        self.tile_kernel = False  # our one-tile Triton kernel where it applies; see vitkit.speed
        self.column_sum_bias_grad = False  # speed option bias_grad (vitkit.layers.bias_grad)
        self.qkv_bias_sums = False  # speed option qkv_bias_sums (vitkit.layers.qkv_attention)

    def forward(self, x: torch.Tensor, need_weights: bool = False, affine: LayerNorm | None = None,
                residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> (B, N, D), plus the (B, heads, N, N) attention weights if asked for.

        The weights path computes softmax(q k^T / sqrt(d)) explicitly; the default path never
        materialises it and lets SDPA pick a fused kernel. A test keeps the two equal.
        affine: the LayerNorm whose affine x still lacks (x = affine.normalize(...)), folded into qkv.
        residual: returns residual + attention(x), the add inside proj's matmul (speed option
        residual_epilogue; only without proj's dropout, which would come between the two).
        """
        if residual is not None and self.training and self.proj_drop.p > 0:
            raise ValueError("attention with dropout after proj cannot add the residual inside proj's matmul")
        dropout_p = self.attn_dropout if self.training else 0.0
        weights = None
        if (self.tile_kernel and self.qkv_bias_sums and not need_weights
                and qkv_attention.applies(x, self.head_dim, self.qkv.bias, dropout_p)):
            weight, bias = folded_parameters(self.qkv, affine)
            out = qkv_attention.qkv_tile_attention(x, weight, bias, self.num_heads, self.scale,
                                                   self.column_sum_bias_grad)
        else:
            # (B, N, 3 * D), laid out as (B, N, 3, heads, head_dim)
            qkv = bias_grad.layer_linear(x, self.qkv, affine, self.column_sum_bias_grad)
            if self.tile_kernel and not need_weights and tile_attention.applies(qkv, self.head_dim, dropout_p):
                out = tile_attention.tile_attention(qkv, self.num_heads, self.scale)  # (B, N, D), no transposes
            else:
                out, weights = self._attend(qkv, need_weights, dropout_p)
        if residual is not None:
            return bias_grad.residual_linear(out, self.proj, residual, self.column_sum_bias_grad), weights
        return self.proj_drop(bias_grad.layer_linear(out, self.proj, column_sums=self.column_sum_bias_grad)), weights

    def forward_first_query(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, 1, D): the attention output (after proj) at token 0 alone, every token
        still a key and a value (speed option last_block_cls; vitkit.model.VisionTransformer.forward).

        q is projected for token 0 only and k, v for all tokens, from the same rows of qkv's weight
        that the full path uses (laid out as (3, heads, head_dim)), so token 0's output is the same
        function; the other tokens' queries, attention rows and proj are never computed.
        """
        B, N, D = x.shape
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, :1], weight[:D], None if bias is None else bias[:D])
        kv = F.linear(x, weight[D:], None if bias is None else bias[D:])
        q = q.reshape(B, self.num_heads, 1, self.head_dim)  # (B, heads, 1, head_dim)
        k, v = kv.reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # One query row per head: element-wise products summed in fp32 (or wider), which compiled
        # become two fused reductions over k and v, saved in their own dtype for the backward. SDPA's
        # fused kernels pad the row to a tile of 64: cuDNN's took 124 us forward and backward at the
        # CIFAR scale, nearly the 137 of attention over all 65 queries (docs/benchmarks.md section 20).
        wide = torch.promote_types(kv.dtype, torch.float32)
        weights = ((q * k).sum(-1, dtype=wide) * self.scale).softmax(-1)  # (B, heads, N)
        weights = F.dropout(weights, self.attn_dropout, self.training)
        out = (weights.unsqueeze(-1) * v).sum(2, dtype=wide).reshape(B, 1, D).to(kv.dtype)
        return self.proj_drop(bias_grad.layer_linear(out, self.proj, column_sums=self.column_sum_bias_grad))

    def _attend(self, qkv: torch.Tensor, need_weights: bool,
                dropout_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SDPA, or the explicit softmax when the weights are wanted: (B, N, heads * head_dim) and the weights."""
        B, N, _ = qkv.shape
        qkv = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if need_weights:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
            attn = attn.softmax(dim=-1)
            weights = attn
            if dropout_p:
                attn = F.dropout(attn, dropout_p)
            out = attn @ v
        else:
            weights = None
            pinned = self.sdpa_backends
            with sdpa_kernel(pinned) if pinned else contextlib.nullcontext():
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return out.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim), weights

"""The Vision Transformer of Dosovitskiy et al. (ICLR 2021), equations 1-4, and its hybrid."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from vitkit.config import ViTConfig
from vitkit.layers import Block, PatchEmbed, resample_pos_embed, sincos_2d
from vitkit.layers.hybrid_embed import HybridEmbed
from vitkit.layers.norm import LayerNorm
from vitkit.layers.recompute import run_block


class VisionTransformer(nn.Module):
    """Patches -> linear projection -> [class token] + positions -> pre-LN encoder -> norm -> head.

    With `config.backbone` set it is the paper's hybrid: the patches come from a ResNet's feature
    map instead of the image; everything after the patch embedding is the same.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.grid = c.token_grid()  # fails early on a bad size
        num_patches = self.grid[0] * self.grid[1]
        if c.backbone is not None:  # hybrid: patches of a ResNet feature map (section 3.1)
            self.patch_embed: PatchEmbed | HybridEmbed = HybridEmbed(
                c.backbone, c.in_chans, c.embed_dim, c.patch_size, c.stride)
        else:
            self.patch_embed = PatchEmbed(c.patch_size, c.stride, c.in_chans, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim)) if c.pool == "cls" else None
        if c.pos_embed == "learn":
            # The paper's E_pos covers the class token too: (1, prefix + N, D).
            self.pos_embed = nn.Parameter(torch.zeros(1, c.num_prefix_tokens + num_patches, c.embed_dim))
        elif c.pos_embed == "sincos":
            # Fixed, patches only (the class token gets no position), rebuilt rather than stored.
            self.register_buffer("pos_embed", sincos_2d(self.grid, c.embed_dim)[None], persistent=False)
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(c.dropout)
        drop_rates = [c.drop_path * i / max(c.depth - 1, 1) for i in range(c.depth)]  # linear in depth
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_dim, qkv_bias=c.qkv_bias, dropout=c.dropout,
                  attn_dropout=c.attn_dropout, drop_path=rate, norm_eps=c.norm_eps, gelu=c.gelu)
            for rate in drop_rates
        )
        self.norm = LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.pre_logits = self._make_pre_logits()
        self.head = self._make_head(c.num_classes)
        self.grad_checkpointing = False  # recompute block activations in backward to save memory
        self.residual_dtype: torch.dtype | None = None  # e.g. bf16 residual stream; see vitkit.speed
        self.last_block_cls = False  # speed option last_block_cls: forward's last block on the class token only
        self.init_weights()

    # ---- construction -------------------------------------------------------------------
    def _make_pre_logits(self) -> nn.Module:
        r = self.config.representation_size
        if not r:
            return nn.Identity()
        return nn.Sequential(OrderedDict(fc=nn.Linear(self.config.embed_dim, r), act=nn.Tanh()))

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        width = self.config.representation_size or self.config.embed_dim
        head = nn.Linear(width, num_classes)
        nn.init.zeros_(head.weight)  # the paper fine-tunes from a zero-initialised head
        nn.init.zeros_(head.bias)
        return head

    @torch.no_grad()
    def init_weights(self) -> None:
        """Xavier-uniform linears, LeCun-normal patch projection, small-normal position table."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and module is not self.head:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(proj.bias)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def reset_head(self, num_classes: int, keep_representation: bool = False) -> None:
        """A fresh zero-initialised head for new classes; drops the pre-logits layer by default."""
        self.config.class_names = None  # the old names no longer apply
        if not keep_representation:
            self.config.representation_size = None
            self.pre_logits = nn.Identity()
        self.config.num_classes = num_classes
        device = self.norm.weight.device
        self.head = self._make_head(num_classes).to(device)

    # ---- forward ------------------------------------------------------------------------
    def _positions(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """(1, prefix + N, D) or (1, N, D) position table for a grid, resampled if it differs."""
        if self.pos_embed is None or grid == self.grid:
            return self.pos_embed
        if not self.config.dynamic_img_size:
            h, w = self.config.img_size
            raise ValueError(
                f"this model is configured for {h}x{w} images (patch grid {self.grid}), got a "
                f"{grid} grid; resize the input, create the model with dynamic_img_size=True, or "
                f"load it with img_size=... to resample its position embeddings"
            )
        if self.config.pos_embed == "sincos":
            return sincos_2d(grid, self.config.embed_dim)[None].to(self.pos_embed)
        return resample_pos_embed(self.pos_embed, self.grid, grid, self.config.num_prefix_tokens,
                                  self.config.pos_interp)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, prefix + N, D) input tokens z_0 (eq. 1)."""
        grid = self.patch_embed.grid((x.shape[-2], x.shape[-1]))
        x = self.patch_embed(x)  # (B, N, D)
        pos = self._positions(grid)
        prefix = self.config.num_prefix_tokens
        if pos is not None:
            # Add positions to the patches before the concat: one add over (B, N, D), not a copy.
            x = x + pos[:, pos.shape[1] - x.shape[1]:]
        if self.cls_token is not None:
            cls = self.cls_token
            if pos is not None and pos.shape[1] > x.shape[1]:
                cls = cls + pos[:, :prefix]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        if self.residual_dtype is not None and torch.is_autocast_enabled(x.device.type):
            x = x.to(self.residual_dtype)  # only under autocast, where every matmul takes bf16
        return self.pos_drop(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, prefix + N, D) tokens out of the last block, before the final LayerNorm."""
        x = self.embed(x)
        for block in self.blocks:
            x = run_block(block, x, self.grad_checkpointing)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, prefix + N, D) tokens after the final LayerNorm."""
        return self.norm(self.encode(x))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, D) -> (B, D): the class token, or the mean of the patch tokens."""
        if self.config.pool == "cls":
            return tokens[:, 0]
        return tokens[:, self.config.num_prefix_tokens:].mean(dim=1)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.pool(tokens))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_classes) logits (eq. 4 plus the head)."""
        if self.config.pool != "cls":
            return self.forward_head(self.norm(self.encode(x)))
        if self.last_block_cls and len(self.blocks):
            # the head reads only the class token, and nothing reads the last block's other outputs:
            # run that block for token 0's row alone (Block.forward_first_token)
            x = self.embed(x)
            for block in self.blocks[:-1]:
                x = run_block(block, x, self.grad_checkpointing)
            tokens = self.blocks[-1].forward_first_token(x)
        else:
            # LayerNorm works token by token and the head reads only the class token, so norm that
            # alone: the same logits without a forward and backward pass over every token
            tokens = self.encode(x)[:, :1]
        return self.forward_head(self.norm(tokens))

    def forward_intermediates(self, x: torch.Tensor, blocks: Sequence[int] | None = None,
                              norm: bool = False) -> dict[int, torch.Tensor]:
        """Outputs of chosen blocks as {block index: (B, prefix + N, D)}; negative indices count
        from the end. `norm=True` applies the final LayerNorm to each (as linear probes expect)."""
        depth = len(self.blocks)
        wanted = {i % depth for i in (range(depth) if blocks is None else blocks)}
        bad = [i for i in (blocks or []) if not -depth <= i < depth]
        if bad:
            raise IndexError(f"block indices {bad} out of range for a model of depth {depth}")
        out: dict[int, torch.Tensor] = {}
        x = self.embed(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                out[i] = self.norm(x) if norm else x
            if len(out) == len(wanted):
                break  # no need to run the deeper blocks
        return out

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits plus every layer's (B, heads, tokens, tokens) attention weights, for analysis.

        Uses the explicit attention path; the plain `forward` stays on fused SDPA.
        """
        x = self.embed(x)
        weights = []
        for block in self.blocks:
            x, w = block.forward_with_attention(x)
            weights.append(w)
        return self.forward_head(self.norm(x)), weights

    # ---- conveniences -------------------------------------------------------------------
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not be decayed: embeddings, norms and biases."""
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or n in ("cls_token", "pos_embed")}

    def save(self, path: str | Path) -> Path:
        """Write safetensors weights plus a JSON config; see `vitkit.checkpoints.native`."""
        from vitkit.checkpoints.native import save_model

        return save_model(self, path)

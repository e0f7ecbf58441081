"""Position embeddings: fixed 2D sin-cos tables and 2D resampling of learned ones."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sincos_2d(grid: tuple[int, int], dim: int, temperature: float = 10_000.0) -> torch.Tensor:
    """(gh * gw, dim) fixed embedding: a quarter of the channels each for sin/cos of y and x."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs dim divisible by 4, got {dim}")
    gh, gw = grid
    y, x = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4 - 1 or 1))
    y = y.flatten()[:, None] * omega[None, :]  # (N, dim/4)
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()  # (N, dim)


def resample_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Interpolate (1, prefix + gh*gw, D) embeddings to a new grid in 2D (paper section 3.2).

    Prefix (class-token) embeddings are kept apart and unchanged. Interpolation runs in float32
    whatever the stored dtype, then casts back, so bf16 checkpoints resample as well as fp32 ones.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    n_expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if pos_embed.ndim != 3 or pos_embed.shape[1] != n_expected:
        raise ValueError(
            f"position embedding of shape {tuple(pos_embed.shape)} does not match a {old_grid} grid "
            f"with {num_prefix_tokens} prefix token(s) (expected (1, {n_expected}, D))"
        )
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    # Antialias only when shrinking: upsampling then matches Hugging Face's interpolate_pos_encoding.
    shrink = new_grid[0] < old_grid[0] or new_grid[1] < old_grid[1]
    grid = F.interpolate(grid, size=tuple(new_grid), mode=mode, align_corners=False, antialias=shrink)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def square_grid(num_patches: int) -> tuple[int, int]:
    """The square grid of a flat embedding, for checkpoints that do not store their grid."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"{num_patches} position embeddings do not form a square grid; pass img_size")
    return (side, side)

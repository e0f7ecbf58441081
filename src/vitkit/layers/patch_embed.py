"""Patch embedding: split the image into (possibly overlapping) patches and project each to D.

A strided convolution with kernel = patch size computes exactly the paper's "flatten each patch
and multiply by E" (eq. 1); a stride below the patch size gives overlapping patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grid_size(img_size: tuple[int, int], patch_size: int, stride: int) -> tuple[int, int]:
    """Number of patch rows and columns, or ValueError naming the sizes that would work."""
    grid = []
    for axis, n in zip(("height", "width"), img_size):
        if n < patch_size or (n - patch_size) % stride:
            raise ValueError(
                f"image {axis} {n} is not tiled by patches of {patch_size} with stride {stride}; "
                f"sizes that work near it: {nearby_valid_sizes(n, patch_size, stride)}"
            )
        grid.append((n - patch_size) // stride + 1)
    return (grid[0], grid[1])


def nearby_valid_sizes(n: int, patch_size: int, stride: int, count: int = 3) -> list[int]:
    """The valid image sides (patch + k * stride) closest to n."""
    k = max(0, round((n - patch_size) / stride))
    sides = {patch_size + j * stride for j in range(max(0, k - count), k + count + 1)}
    return sorted(sorted(sides, key=lambda s: abs(s - n))[:count])


def patch_centers(
    img_size: tuple[int, int], patch_size: int, stride: int
) -> torch.Tensor:
    """(N, 2) pixel coordinates (y, x) of each patch's centre, row-major like the tokens."""
    gh, gw = grid_size(img_size, patch_size, stride)
    ys = torch.arange(gh, dtype=torch.float64) * stride + (patch_size - 1) / 2
    xs = torch.arange(gw, dtype=torch.float64) * stride + (patch_size - 1) / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([yy.flatten(), xx.flatten()], dim=-1)


class PatchEmbed(nn.Module):
    """(B, C, H, W) image -> (B, N, D) patch tokens, N = grid_h * grid_w in row-major order."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride)
        self.as_matmul = False  # non-overlapping patches as reshape + one matmul; see vitkit.speed

    def grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        return grid_size(hw, self.patch_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images of shape (batch, {self.in_chans}, height, width), got {tuple(x.shape)}"
            )
        gh, gw = self.grid((x.shape[-2], x.shape[-1]))  # clear error before the conv's cryptic one
        if self.as_matmul and self.stride == self.patch_size:
            B, C, p = x.shape[0], self.in_chans, self.patch_size
            if torch.is_autocast_enabled(x.device.type):  # permute half the bytes
                x = x.to(torch.get_autocast_dtype(x.device.type))
            x = x.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
            return F.linear(x, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)  # (B, N, D)
        x = self.proj(x)  # (B, D, gh, gw)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)

"""Building blocks of the Vision Transformer."""

from vitkit.layers.attention import Attention
from vitkit.layers.block import Block, DropPath, Mlp
from vitkit.layers.patch_embed import PatchEmbed, grid_size, patch_centers
from vitkit.layers.pos_embed import resample_pos_embed, sincos_2d

__all__ = ["Attention", "Block", "DropPath", "Mlp", "PatchEmbed", "grid_size", "patch_centers",
           "resample_pos_embed", "sincos_2d"]

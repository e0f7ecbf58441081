"""Inside the ViT (paper section 4.5) as tensors: embedding filters, position similarity,
mean attention distance and attention rollout. Pictures of these live in `vitkit.plots`.

Every function here is pure: tensors (or a model's weights) in, tensors out, on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vitkit.layers.patch_embed import patch_centers
from vitkit.model import VisionTransformer


# ---- embedding filters (paper Fig. 7 left) -----------------------------------------------
def filter_pca(weight: torch.Tensor, k: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of a (D, C, p, p) patch projection, as (k, C, p, p) filters.

    Each of the D filters is one sample of a C*p*p vector; the filters are centred and the
    components are the right singular vectors, largest variance first. Also returns the (k,)
    share of the total variance each component explains. k is capped at the rank min(D, C*p*p).
    A component's sign is arbitrary; we make its largest-magnitude entry positive so the
    result is reproducible.
    """
    D, C, ph, pw = weight.shape
    flat = weight.detach().reshape(D, C * ph * pw).double()  # (D, C*p*p)
    flat = flat - flat.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(flat, full_matrices=False)  # vh: (min(D, Cpp), Cpp)
    k = min(k, vh.shape[0])
    comps = vh[:k]
    peak = comps.gather(1, comps.abs().argmax(dim=1, keepdim=True))  # (k, 1)
    comps = comps * torch.where(peak < 0, -1.0, 1.0).to(comps)
    var = s.square()
    ratio = var[:k] / var.sum().clamp_min(torch.finfo(var.dtype).tiny)
    return comps.reshape(k, C, ph, pw).to(weight.dtype), ratio.to(weight.dtype)


def embedding_filters(model: VisionTransformer, k: int = 28) -> torch.Tensor:
    """(k, C, p, p) principal components of the model's patch-embedding filters."""
    return filter_pca(model.patch_embed.proj.weight, k)[0]


# ---- position-embedding similarity (paper Fig. 7 centre) --------------------------------
def cosine_similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) cosine similarity of every row with every row."""
    unit = F.normalize(embeddings.detach().float(), dim=-1)
    return unit @ unit.T


def patch_position_embeddings(model: VisionTransformer) -> torch.Tensor:
    """(N, D) position embeddings of the patches only (the class token's is dropped).

    Raises ValueError for models built with pos_embed='none', which have no such table.
    """
    if model.pos_embed is None:
        raise ValueError(
            f"model {model.config.name!r} has no position embeddings (pos_embed='none'), so there "
            "is no position similarity to show; the other analyses still apply")
    n = model.grid[0] * model.grid[1]
    # Learned tables are (1, prefix + N, D), sin-cos ones (1, N, D): the patches are the last N.
    return model.pos_embed[0, -n:]


def position_similarity(model: VisionTransformer) -> torch.Tensor:
    """(N, N) cosine similarity between the position embeddings of every pair of patches.

    Row i reshaped to the (gh, gw) grid is the small map the paper draws for patch i.
    """
    return cosine_similarity_matrix(patch_position_embeddings(model))


# ---- mean attention distance (paper Fig. 7 right) ---------------------------------------
def attention_distance_per_image(attn: Sequence[torch.Tensor], centers: torch.Tensor,
                                 num_prefix: int) -> torch.Tensor:
    """(B, depth, heads) attention-weighted mean distance in pixels, per image.

    attn: one (B, heads, T, T) softmax map per layer, T = num_prefix + N. centers: (N, 2)
    pixel coordinates of the patch centres (`patch_centers`; correct for overlapping patches).

    Only patch-to-patch attention is used: prefix tokens have no place in the image. Each
    query's weights over the patch keys are renormalised to sum to 1, so a head that sends
    most of its mass to the class token is still measured by where its remaining attention
    goes, rather than being pulled towards 0. The distance of a query is then
    sum_k a(q, k) * |c_q - c_k|, averaged over the N patch queries.
    """
    if not attn:
        raise ValueError("the attention distance needs the attention of at least one layer")
    n = centers.shape[0]
    c = centers.to(attn[0].device, torch.float64)
    dist = torch.cdist(c, c).float()  # (N, N) pixels between patch centres
    out = []
    for a in attn:
        if a.shape[-1] != num_prefix + n or a.shape[-2] != num_prefix + n:
            raise ValueError(f"attention of shape {tuple(a.shape)} does not match {num_prefix} "
                             f"prefix token(s) + {n} patches")
        patches = a[..., num_prefix:, num_prefix:].float()  # (B, heads, N, N)
        patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        per_query = torch.einsum("bhqk,qk->bhq", patches, dist)  # (B, heads, N)
        out.append(per_query.mean(dim=-1))  # (B, heads)
    return torch.stack(out, dim=1)  # (B, depth, heads)


def mean_attention_distance(attn: Sequence[torch.Tensor], centers: torch.Tensor,
                            num_prefix: int) -> torch.Tensor:
    """(depth, heads) mean attention distance in pixels, averaged over the batch.

    See `attention_distance_per_image` for the exact definition.
    """
    return attention_distance_per_image(attn, centers, num_prefix).mean(dim=0)


def uniform_attention_distance(centers: torch.Tensor) -> float:
    """Mean attention distance of a head attending uniformly: the mean over all ordered pairs
    of patches (a patch with itself included) of the distance between their centres, in pixels."""
    c = centers.double()
    return float(torch.cdist(c, c).mean())


def model_patch_centers(model: VisionTransformer) -> torch.Tensor:
    """(N, 2) pixel centres (y, x) of the model's patches at its configured image size."""
    c = model.config
    return patch_centers(c.img_size, c.patch_size, c.stride)  # type: ignore[arg-type]


# ---- attention rollout (Abnar & Zuidema 2020; paper Fig. 6) -----------------------------
def attention_rollout(attn: Sequence[torch.Tensor], *, residual: bool = True) -> torch.Tensor:
    """(B, T, T) rollout: how much each output token draws on each input token.

    Per layer: average the (B, heads, T, T) weights over heads; with `residual`, account for
    the skip connection as 0.5 * A + 0.5 * I; renormalise rows to sum to 1. Then multiply
    through the layers, R = A_L @ ... @ A_1, so row t of R is a distribution over input tokens.
    """
    if not attn:
        raise ValueError("attention_rollout needs the attention of at least one layer")
    rollout = None
    for a in attn:
        a = a.float().mean(dim=1)  # (B, T, T)
        if residual:
            eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
            a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        rollout = a if rollout is None else a @ rollout  # later layers act on earlier ones
    return rollout  # type: ignore[return-value]


def rollout_map(rollout: torch.Tensor, grid: tuple[int, int], pool: str) -> torch.Tensor:
    """(B, T, T) rollout -> (B, gh, gw) map of how much the pooled output draws on each patch.

    pool='cls': the class token's row, restricted to the patches. pool='gap': the mean of the
    patch rows (the pooled output is the mean of the patch tokens). Not renormalised: for 'cls'
    the values sum to 1 minus the share the class token keeps for itself.
    """
    gh, gw = grid
    prefix = 1 if pool == "cls" else 0
    if pool not in ("cls", "gap"):
        raise ValueError(f"pool must be 'cls' or 'gap', got {pool!r}")
    if rollout.shape[-1] != prefix + gh * gw:
        raise ValueError(f"rollout of shape {tuple(rollout.shape)} does not match a {grid} grid "
                         f"with {prefix} prefix token(s)")
    if pool == "cls":
        row = rollout[:, 0, prefix:]  # (B, N)
    else:
        row = rollout[:, prefix:, prefix:].mean(dim=1)  # (B, N)
    return row.reshape(-1, gh, gw)


def upsample_map(patch_map: torch.Tensor, img_size: tuple[int, int], patch_size: int,
                 stride: int) -> torch.Tensor:
    """(B, gh, gw) per-patch values -> (B, H, W), bilinear between the patches' true centres.

    Unlike a plain resize this puts each value at its patch's centre in pixels, so overlapping
    patches (stride < patch size) land where they were taken from; beyond the outermost
    centres the edge value is held.
    """
    H, W = img_size
    gh, gw = patch_map.shape[-2:]
    offset = (patch_size - 1) / 2

    def coords(n: int, g: int) -> torch.Tensor:
        # Pixel -> fractional patch index -> grid_sample's [-1, 1] (align_corners=True).
        u = (torch.arange(n, dtype=torch.float32, device=patch_map.device) - offset) / stride
        return 2 * u / (g - 1) - 1 if g > 1 else torch.zeros_like(u)

    yy, xx = torch.meshgrid(coords(H, gh), coords(W, gw), indexing="ij")
    sample = torch.stack([xx, yy], dim=-1)[None].expand(patch_map.shape[0], H, W, 2)  # x first
    out = F.grid_sample(patch_map[:, None].float(), sample, mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out[:, 0]  # (B, H, W)

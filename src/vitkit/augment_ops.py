"""RandAugment and TrivialAugment for batches of float images in [0, 1], one op choice per image.

Why not kornia's: kornia 0.9's versions draw one op (RandAugment: n ops) for the whole batch, so a
batch is e.g. all solarized; its 'color' op raises on 1-channel images; and its shear maps 0.3 to
54 degrees. Here every image draws its own op, sign and magnitude from the torch RNG of the
batch's device, 1- and 3-channel images work, the ops follow PIL's definitions (tests compare with
PIL), and nothing needs a host-device sync.

Ops and magnitudes follow torchvision's RandAugment (num_magnitude_bins=31, m in 0..30) and
TrivialAugmentWide, except translation, which is relative to the image size in both spaces.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPS = ("identity", "auto_contrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
       "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_BIN = 30  # magnitudes come in 31 bins, 0..30

# The magnitude at bin 30: rotate in degrees, shear as a factor, translate as a fraction of the size,
# enhance ops as the factor's distance from 1, posterize as bits removed (of 8).
SPACES = {
    "standard": dict(rotate=30.0, shear=0.3, translate=150 / 331, enhance=0.9, posterize_bits=4),
    "wide": dict(rotate=135.0, shear=0.99, translate=0.5, enhance=0.99, posterize_bits=6),
}


def op_index(name: str) -> int:
    return OPS.index(name)


def gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's 'L'): (B, 1, H, W); a 1-channel image is its own gray."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def blend(image: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: factor 1 gives the image, 0 the degenerate one, beyond extrapolates."""
    return (degenerate + factor * (image - degenerate)).clamp(0.0, 1.0)


def smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter inside the image, border pixels unchanged (as PIL leaves them)."""
    c = x.shape[1]
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device, dtype=x.dtype) / 13
    inner = F.conv2d(x, k.expand(c, 1, 3, 3), groups=c)  # (B, C, H-2, W-2)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> integer levels 0..255 (int64)."""
    return (x * 255).round().clamp(0, 255).to(torch.int64)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` (B,) bits of every 8-bit level."""
    mask = (255 - (2 ** (8 - bits) - 1)).view(-1, 1, 1, 1)  # e.g. 4 bits -> 0b11110000
    return (to_levels(x) & mask).to(x.dtype) / 255


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert levels >= threshold (B,), in 8-bit levels 0..256 (256: nothing inverted)."""
    return torch.where(to_levels(x) >= threshold.view(-1, 1, 1, 1), 1.0 - x, x)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full range; a flat channel is left alone."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), x)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize per channel of each image, batched.

    Counts come from sorting and `searchsorted` rather than a scatter-add histogram, so the result
    is deterministic on every device (CUDA scatter-add is not, under use_deterministic_algorithms).
    """
    b, c, h, w = x.shape
    q = to_levels(x).flatten(0, 1).flatten(1)  # (B*C, H*W)
    ordered = torch.sort(q, dim=1).values
    levels = torch.arange(256, device=x.device).expand(q.shape[0], 256).contiguous()
    below = torch.searchsorted(ordered, levels)  # pixels strictly below each level, (B*C, 256)
    top = h * w - below.gather(1, ordered[:, -1:])  # pixels at the highest level present, (B*C, 1)
    step = (h * w - top) // 255
    lut = ((below + step // 2) // step.clamp_min(1)).clamp(max=255)
    out = torch.where(step > 0, lut.gather(1, q), q)
    return out.view(b, c, h, w).to(x.dtype) / 255


def affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Warp with per-image 2x3 `matrix` (B, 2, 3) mapping output to input pixel offsets from the centre.

    Uncovered pixels take `fill` (1, C, 1, 1).
    """
    h, w = x.shape[-2:]
    # pixel offsets from the centre -> grid_sample's [-1, 1] (align_corners=False): u = n * (w / 2)
    theta = matrix.clone()
    theta[:, 0, 1] *= h / w
    theta[:, 1, 0] *= w / h
    theta[:, 0, 2] *= 2 / w
    theta[:, 1, 2] *= 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def geometric_matrix(op: torch.Tensor, signed: torch.Tensor, space: dict, h: int, w: int) -> torch.Tensor:
    """(B, 2, 3) sampling matrices; identity rows for images whose op is not geometric.

    `signed` (B,) is the signed magnitude fraction in [-1, 1]. Each image has at most one geometric
    op per pass, so the factors are simply multiplied together.
    """
    def pick(name: str, scale: float) -> torch.Tensor:
        return torch.where(op == op_index(name), signed * scale, torch.zeros_like(signed))

    angle = pick("rotate", math.radians(space["rotate"]))
    shx, shy = pick("shear_x", space["shear"]), pick("shear_y", space["shear"])
    tx, ty = pick("translate_x", space["translate"] * w), pick("translate_y", space["translate"] * h)
    cos, sin = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(op.shape[0], 2, 3, device=op.device, dtype=signed.dtype)
    m[:, 0, 0], m[:, 0, 1] = cos - sin * shy, cos * shx - sin  # rotation @ shear
    m[:, 1, 0], m[:, 1, 1] = sin + cos * shy, sin * shx + cos
    m[:, 0, 2], m[:, 1, 2] = -tx, -ty  # sampling at p - t moves the content by +t
    return m


def apply_ops(x: torch.Tensor, op: torch.Tensor, fraction: torch.Tensor, sign: torch.Tensor,
              fill: torch.Tensor, space: str = "standard") -> torch.Tensor:
    """Apply to each image b the op OPS[op[b]] at magnitude fraction[b] in [0, 1] with sign[b] = +-1.

    Every op is computed for the whole batch and selected per image with `where`: a dozen cheap
    element-wise passes and one warp, with no data-dependent control flow (no device sync).
    """
    s = SPACES[space]
    pick = op.view(-1, 1, 1, 1)
    signed = fraction * sign
    enhance = (1.0 + signed * s["enhance"]).view(-1, 1, 1, 1)
    geo = torch.zeros_like(op, dtype=torch.bool)
    for name in GEOMETRIC:
        geo |= op == op_index(name)
    out = torch.where(geo.view(-1, 1, 1, 1),
                      affine(x, geometric_matrix(op, signed, s, *x.shape[-2:]), fill), x)
    bits = 8 - torch.round(fraction * s["posterize_bits"]).to(torch.int64)
    threshold = torch.round(256 * (1.0 - fraction)).to(torch.int64)
    g = gray(x)
    candidates = {
        "auto_contrast": lambda: auto_contrast(x),
        "equalize": lambda: equalize(x),
        "solarize": lambda: solarize(x, threshold),
        "color": lambda: blend(x, g.expand_as(x), enhance),
        "posterize": lambda: posterize(x, bits),
        "contrast": lambda: blend(x, g.mean(dim=(1, 2, 3), keepdim=True), enhance),
        "brightness": lambda: blend(x, torch.zeros_like(x), enhance),
        "sharpness": lambda: blend(x, smooth(x), enhance),
    }
    for name, fn in candidates.items():
        out = torch.where(pick == op_index(name), fn(), out)
    return out


def random_signs(b: int, device: torch.device) -> torch.Tensor:
    return torch.where(torch.rand(b, device=device) < 0.5, -1.0, 1.0)


def rand_augment(x: torch.Tensor, n: int, m: int, fill: torch.Tensor) -> torch.Tensor:
    """RandAugment: n ops per image, each drawn uniformly (with replacement), magnitude m of 0..30."""
    b = x.shape[0]
    fraction = torch.full((b,), m / MAX_BIN, device=x.device)
    for _ in range(n):
        op = torch.randint(len(OPS), (b,), device=x.device)
        x = apply_ops(x, op, fraction, random_signs(b, x.device), fill, "standard")
    return x


def trivial_augment(x: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """TrivialAugment (wide): one op per image, its magnitude bin drawn uniformly from 0..30."""
    b = x.shape[0]
    op = torch.randint(len(OPS), (b,), device=x.device)
    fraction = torch.randint(MAX_BIN + 1, (b,), device=x.device).to(x.dtype) / MAX_BIN
    return apply_ops(x, op, fraction, random_signs(b, x.device), fill, "wide")

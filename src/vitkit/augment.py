"""Batched augmentation and regularisation on uint8 image tensors, on whatever device they are.

`BatchAugment(config, out_size, mean, std, num_classes)(images, labels)` takes uint8 (B, C, H, W)
and returns normalised float images at `out_size` and soft targets (B, num_classes). Order:
crop (pad-and-crop at the stored size, or random-resized crop) -> resize -> flip -> RandAugment /
TrivialAugment -> normalise -> random erasing -> mixup / cutmix, label smoothing in the targets.

Randomness: per-image draws come from the torch RNG of the batch's device, per-batch draws (mix or
not, lambda, the cutmix box) from the CPU torch RNG; never Python's `random` or numpy. Restoring
`torch.get_rng_state()` (and the CUDA state) therefore replays an augmentation exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.augment_ops import rand_augment, trivial_augment
from vitkit.config import as_pair

RRC_RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of random-resized crops (Inception, torchvision)
ERASE_AREA = (0.02, 1 / 3)  # random erasing (Zhong et al.; timm defaults)
ERASE_RATIO = (0.3, 1 / 0.3)


@dataclass
class AugmentConfig:
    """Training augmentation; the defaults are light (pad-and-crop + flip). Serialises to a dict."""

    crop: str = "pad"  # "pad" (pad-and-crop), "rrc" (random resized crop), "none"
    pad: int = 4  # pixels of the stored image, each side
    pad_mode: str = "reflect"  # "reflect" or "zero"
    rrc_scale: tuple[float, float] = (0.35, 1.0)  # area fraction range of random resized crops
    hflip: bool = True
    auto: str = "none"  # "none" | "randaugment" | "trivialaugment"
    randaugment_n: int = 2
    randaugment_m: int = 9  # 0..30
    mixup: float = 0.0  # Beta(alpha, alpha) for mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) for cutmix; 0 = off
    mix_prob: float = 1.0  # probability a batch is mixed (mixup or cutmix 50/50 when both are on)
    erase: float = 0.0  # random-erasing probability per image
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.rrc_scale = (float(self.rrc_scale[0]), float(self.rrc_scale[1]))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        choices = {"crop": ("pad", "rrc", "none"), "pad_mode": ("reflect", "zero"),
                   "auto": ("none", "randaugment", "trivialaugment")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"augment {name} must be one of {allowed}, got {getattr(self, name)!r}")
        lo, hi = self.rrc_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"rrc_scale must satisfy 0 < low <= high <= 1, got {self.rrc_scale}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if not 1 <= self.randaugment_n <= 10 or not 0 <= self.randaugment_m <= 30:
            raise ValueError(f"randaugment_n must be in 1..10 and randaugment_m in 0..30, "
                             f"got {self.randaugment_n}, {self.randaugment_m}")
        if self.mixup < 0 or self.cutmix < 0:
            raise ValueError(f"mixup and cutmix are Beta alphas >= 0 (0 = off), "
                             f"got {self.mixup}, {self.cutmix}")
        for name in ("mix_prob", "erase"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rrc_scale"] = list(self.rrc_scale)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TypeError(f"unknown augment field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**d)


# ---- crops (float images in [0, 1], (B, C, H, W)) ----

def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize, antialiased when shrinking; a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def pad_crop(x: torch.Tensor, pad: int, mode: str = "reflect") -> torch.Tensor:
    """Pad each side by `pad` and cut a random window of the original size: an integer shift per image."""
    if pad == 0:
        return x
    b, _, h, w = x.shape
    if mode == "reflect" and pad >= min(h, w):
        raise ValueError(f"reflect padding needs pad < image size, got pad {pad} for {h}x{w}; "
                         "use a smaller pad or pad_mode='zero'")
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect" if mode == "reflect" else "constant")
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return xp[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)


def random_resized_crop(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float],
                        ratio: tuple[float, float] = RRC_RATIO) -> torch.Tensor:
    """Per image: a box of area fraction ~U(scale) and log-uniform aspect ratio, resized to `size`.

    A box that would not fit is clamped to the image rather than redrawn (no data-dependent loop).
    """
    b, _, h, w = x.shape
    if h > size[0] or w > size[1]:  # shrink first (antialiased) so the crop only ever enlarges
        x = resize(x, (min(h, size[0]), min(w, size[1])))
        h, w = x.shape[-2:]
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(*scale) * (h * w)
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    bw = torch.sqrt(area * torch.exp(log_r)).clamp(1.0, w)
    bh = torch.sqrt(area / torch.exp(log_r)).clamp(1.0, h)
    x0 = torch.rand(b, device=dev) * (w - bw)
    y0 = torch.rand(b, device=dev) * (h - bh)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = bw / w, (2 * x0 + bw) / w - 1  # box in grid_sample's [-1, 1]
    theta[:, 1, 1], theta[:, 1, 2] = bh / h, (2 * y0 + bh) / h - 1
    grid = F.affine_grid(theta, [b, x.shape[1], size[0], size[1]], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_erase(x: torch.Tensor, p: float) -> torch.Tensor:
    """With probability p per image, replace one random rectangle by N(0, 1) noise (normalised units)."""
    b, _, h, w = x.shape
    dev = x.device
    apply = torch.rand(b, device=dev) < p
    area = torch.empty(b, device=dev).uniform_(*ERASE_AREA) * (h * w)
    log_r = torch.empty(b, device=dev).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]))
    eh = torch.sqrt(area / torch.exp(log_r)).round().clamp(1, h)
    ew = torch.sqrt(area * torch.exp(log_r)).round().clamp(1, w)
    y0 = (torch.rand(b, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, device=dev) * (w - ew + 1)).floor()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
              & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)) & apply.view(-1, 1, 1))
    return torch.where(inside[:, None], torch.randn_like(x), x)


# ---- targets ----

def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot (B, num_classes) float targets with `smoothing` spread evenly over all classes."""
    onehot = F.one_hot(labels.to(torch.int64), num_classes).to(torch.float32)
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k targets_k log softmax(logits)_k (computed in float32)."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def mix_batch(x: torch.Tensor, targets: torch.Tensor, mixup: float, cutmix: float,
              mix_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix of each image with its mirror in the batch (index B-1-i); targets mix alike."""
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand(())) >= mix_prob:
        return x, targets
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(())) < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())
    partner = x.flip(0)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y1:y2, x1:x2] = partner[:, :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)  # the area actually pasted
    else:
        x = lam * x + (1.0 - lam) * partner
    return x, lam * targets + (1.0 - lam) * targets.flip(0)


# ---- the module ----

def _stats(values: Sequence[float], device: torch.device) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def _check_images(images: torch.Tensor, channels: int) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"expected uint8 (B, {channels}, H, W) images, "
                         f"got {images.dtype} {tuple(images.shape)}")


def preprocess_eval(images_uint8: torch.Tensor, out_size: int | tuple[int, int], mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
    """Deterministic evaluation input: resize (bilinear, antialiased) to out_size and normalise."""
    _check_images(images_uint8, len(mean))
    x = resize(images_uint8.float() / 255.0, as_pair(out_size))
    return (x - _stats(mean, x.device)) / _stats(std, x.device)


class BatchAugment(nn.Module):
    """Training augmentation of a uint8 batch on its own device -> (normalised images, soft targets)."""

    def __init__(self, config: AugmentConfig, out_size: int | tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], num_classes: int):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        self.config = config
        self.out_size = as_pair(out_size)
        self.num_classes = num_classes
        self.register_buffer("mean", _stats(mean, torch.device("cpu")), persistent=False)
        self.register_buffer("std", _stats(std, torch.device("cpu")), persistent=False)

    def forward(self, images_uint8: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_images(images_uint8, self.mean.shape[1])
        return self.mix(self.image_ops(images_uint8), labels)

    def mix(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-batch part on already augmented images: soft targets, then mixup / cutmix."""
        targets = smooth_targets(labels.to(x.device), self.num_classes, self.config.label_smoothing)
        return mix_batch(x, targets, self.config.mixup, self.config.cutmix, self.config.mix_prob)

    def image_ops(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Everything per image (crop, flip, auto-augment, normalise, erase): tensor ops only, no host
        sync, so `compile_image_ops` can fuse it; mixing draws Python numbers and stays eager."""
        cfg = self.config
        x = images_uint8.float() / 255.0  # (B, C, H, W) in [0, 1]
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        if cfg.crop == "rrc":
            x = random_resized_crop(x, self.out_size, cfg.rrc_scale)
        elif cfg.crop == "pad":
            x = pad_crop(x, cfg.pad, cfg.pad_mode)  # at the stored size: `pad` means the same at any out_size
        x = resize(x, self.out_size)
        if cfg.hflip:
            x = random_hflip(x)
        if cfg.auto == "randaugment":
            x = rand_augment(x, cfg.randaugment_n, cfg.randaugment_m, fill=mean)
        elif cfg.auto == "trivialaugment":
            x = trivial_augment(x, fill=mean)
        x = (x - mean) / std
        if cfg.erase > 0:
            x = random_erase(x, cfg.erase)
        return x

    def compile_image_ops(self) -> BatchAugment:
        """Fuse the per-image ops with torch.compile: a TrivialAugment batch is ~260 small eager ops,
        which bounds small-model training steps by kernel launches. Compiled random draws come from
        inductor's generator (seeded from torch's), so they differ from eager draws but still
        replay exactly from a restored RNG state."""
        self.image_ops = torch.compile(self.image_ops, fullgraph=True, dynamic=False)  # type: ignore[method-assign]
        return self

    def extra_repr(self) -> str:
        return f"out_size={self.out_size}, num_classes={self.num_classes}, config={self.config}"

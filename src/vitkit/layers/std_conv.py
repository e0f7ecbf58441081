"""The convolution and normalisation of BiT (Kolesnikov et al. 2020): Weight Standardisation and
GroupNorm, plus TensorFlow's 'SAME' padding, which the paper's hybrid ViT was trained with.

Weight Standardisation (Qiao et al. 2019) normalises each filter to zero mean and unit variance
before the convolution; with GroupNorm it makes the network independent of the batch size, which
is why BiT and the hybrid use it instead of BatchNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.config import Padding


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow 'SAME' along one axis: the output has ceil(size /
    stride) positions and any odd pixel of padding goes after, not before."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) for a 'SAME' convolution or pooling with this kernel and stride."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def needs_dynamic_padding(padding: Padding, kernel: int, stride: int) -> bool:
    """'SAME' padding equals a fixed symmetric padding for stride 1 and an odd kernel; otherwise
    it depends on the input size and is applied in forward."""
    return padding == "same" and (stride > 1 or kernel % 2 == 0)


class StdConv2d(nn.Conv2d):
    """Bias-free convolution whose filters are standardised (zero mean, unit variance per output
    channel) on every call; the stored weight stays free."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: Padding = "symmetric", eps: float = 1e-8) -> None:
        self.dynamic_padding = needs_dynamic_padding(padding, kernel_size, stride)
        fixed = 0 if self.dynamic_padding else ((stride - 1) + (kernel_size - 1)) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=fixed, bias=False)
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight  # (out, in, k, k)
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, correction=0)
        return (w - mean) * torch.rsqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_padding:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardized_weight(), None, self.stride, self.padding)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm, then ReLU unless `act=False` (BiT: 32 groups, epsilon 1e-5)."""

    def __init__(self, channels: int, groups: int = 32, act: bool = True, eps: float = 1e-5) -> None:
        super().__init__(groups, channels, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.act else x


class StemPool(nn.Module):
    """The stem's 3x3 stride-2 max pool. 'symmetric': BiT's one pixel of zeros on every side,
    then an unpadded pool; 'same': TensorFlow's size-dependent padding with -inf."""

    def __init__(self, padding: Padding) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            x = pad_same(x, 3, 2, value=float("-inf"))
        else:
            x = F.pad(x, (1, 1, 1, 1), value=0.0)
        return F.max_pool2d(x, kernel_size=3, stride=2)

    def extra_repr(self) -> str:
        return f"padding={self.padding!r}"

"""The MLP's first linear layer and its GELU as one matrix multiply (speed option `fused_gelu`).

Why: in a compiled ViT-B/16 the GELU after fc1 is its own element-wise kernel that reads and writes
the (tokens, 4 x width) hidden activation once more, about 2.9 ms of a 66.7 ms training step and a
larger share of inference (docs/benchmarks.md sections 7 and 9). cuBLASLt can apply bias and GELU in
the matrix multiply's epilogue, before the result ever reaches memory; PyTorch exposes that as
`torch._addmm_activation(..., use_gelu=True)`, which torch.compile keeps as one library call.

Which GELU: cuBLASLt's epilogue computes the tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x +
0.044715 x^3))), the form the paper's own JAX code uses (flax's `nn.gelu` defaults to it); timm and
transformers use the erf form. The two differ by less than 5e-4 (below bf16's rounding of the
activations), so the switch computes the tanh form on every path, fused or not, and a model keeps one
function on GPU and CPU, in training and inference.

Here only inference is fused: the backward pass needs the pre-activation, which this epilogue does
not keep, so with gradients on the layer is a plain matmul plus `gelu_tanh`, which Inductor fuses
with the bias into one element-wise kernel. (Speed option `mlp_epilogues` fuses training too, through
the cuBLASLt epilogues that keep it: vitkit.layers.fused_mlp.) `gelu_tanh` writes 0.5 (1 + tanh(u)) as sigmoid(2u): the same
function, but compiled the sigmoid is one fast exponential where tanh is a longer libdevice routine,
and the element-wise GELU kernels are partly compute-bound (measured in docs/benchmarks.md section 9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_TWO_SQRT_2_OVER_PI = 2 * math.sqrt(2 / math.pi)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh-approximate GELU, x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), computed in fp32 or wider."""
    h = _at_least_fp32(x)
    return (h * torch.sigmoid(_TWO_SQRT_2_OVER_PI * (h + 0.044715 * h * h * h))).to(x.dtype)


def gelu_tanh_grad(x: torch.Tensor) -> torch.Tensor:
    """d gelu_tanh / dx at x, in fp32 or wider (the factor the backward pass multiplies the gradient by)."""
    h = _at_least_fp32(x)
    s = torch.sigmoid(_TWO_SQRT_2_OVER_PI * (h + 0.044715 * h * h * h))
    return s + h * s * (1 - s) * _TWO_SQRT_2_OVER_PI * (1 + 3 * 0.044715 * h * h)


def matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on x runs in: the autocast dtype while autocast is on for x's device."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def _fusable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    return x.is_cuda and bias is not None and not needs_grad


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """gelu_tanh(x @ weight.T + bias) over the last dimension of x, in one cuBLASLt call where it can be.

    Under autocast the fused call runs in the autocast dtype, like `F.linear` would.
    """
    if not _fusable(x, weight, bias):
        return gelu_tanh(F.linear(x, weight, bias))
    dtype = matmul_dtype(x)
    rows = x.reshape(-1, x.shape[-1]).to(dtype)
    out = torch._addmm_activation(bias.to(dtype), rows, weight.to(dtype).t(), use_gelu=True)
    return out.reshape(*x.shape[:-1], weight.shape[0])

"""fc1's bias + tanh GELU alone, forward and forward + backward (with the bias gradient), bf16: vitkit's
Triton kernels (several launch sizes) against the same function compiled by Inductor.

    python scripts/bias_gelu_bench.py   # one JSON line per (shape, implementation)

Shapes: ViT-B/16's MLP at batch 256 (50,432 tokens x 3,072), the CIFAR-scale model's at batch 512
(33,280 x 1,536).
"""

from __future__ import annotations

import json

import torch

from vitkit.bench import time_steps
from vitkit.layers import bias_gelu as bg
from vitkit.layers.linear_gelu import gelu_tanh

SHAPES = {"b16_b256": (256 * 197, 3072), "cifar_scale_b512": (512 * 65, 1536)}
CONFIGS = {  # name: Launch fields
    "fwd1024_w4_bwd16x256x64_w4": (1024, 4, 16, 256, 64, 4),
    "fwd2048_w8_bwd32x128x32_w4": (2048, 8, 32, 128, 32, 4),
    "fwd4096_w8_bwd8x512x128_w4": (4096, 8, 8, 512, 128, 4),
    "fwd1024_w4_bwd32x256x16_w8": (1024, 4, 32, 256, 16, 8),
    "fwd2048_w4_bwd16x128x64_w4": (2048, 4, 16, 128, 64, 4),
    "fwd1024_w4_bwd64x128x8_w4": (1024, 4, 64, 128, 8, 4),
}


def measure(fn, h: torch.Tensor, bias: torch.Tensor, backward: bool) -> float:
    grad = torch.randn_like(h)

    def step():
        if backward:
            h.grad = bias.grad = None
            fn(h, bias).backward(grad)
        else:
            with torch.no_grad():
                fn(h, bias)
    return time_steps(step, torch.device("cuda"), warmup=5, iters=20, repeats=5)


def main() -> None:
    default = bg.launch
    for shape, (rows, cols) in SHAPES.items():
        h = torch.randn(rows, cols, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        bias = torch.randn(cols, device="cuda", requires_grad=True)
        # as in the model: cuBLAS adds the bias and rounds to bf16, Inductor fuses the GELU and the bias gradient
    candidates = {"inductor": (torch.compile(lambda h, b: gelu_tanh(h + b.to(h.dtype))), None)}
        candidates |= {name: (bg.bias_gelu, bg.Launch(*fields)) for name, fields in CONFIGS.items()}
        for name, (fn, cfg) in candidates.items():
            bg.launch = default if cfg is None else (lambda n, m, c=cfg: c)
            row = {"shape": shape, "rows": rows, "cols": cols, "impl": name,
                   "fwd_ms": measure(fn, h, bias, backward=False), "fwd_bwd_ms": measure(fn, h, bias, backward=True)}
            print(json.dumps(row), flush=True)
    bg.launch = default


if __name__ == "__main__":
    main()

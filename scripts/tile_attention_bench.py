"""Attention alone, from the fused QKV output to the (B, N, heads * head_dim) input of the output
projection: vitkit's Triton kernel (several launch configurations) against every SDPA
backend with the transposes around it (compiled, as in the model), forward and forward +
backward, bf16, each replayed as a CUDA graph (kernel time, without the host's launches).

    python scripts/tile_attention_bench.py [SHAPE ...] [--match TEXT ...]   # default: all shapes below
    # one JSON line per shape and candidate; --match keeps the candidates whose name contains TEXT

Shapes: the speedrun model (101 tokens, 12 heads of 16) at batch 256, its 6-head variant, the
CIFAR-scale model of the speed issue (65 tokens, 6 heads of 64) at batch 512, ViT-B/16 at batch 256.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vitkit.bench import time_graph
from vitkit.layers import tile_attention as ta

SHAPES = {  # name: (batch, tokens, heads, head_dim)
    "speedrun_b256": (256, 101, 12, 16),
    "speedrun_6heads": (256, 101, 6, 32),
    "cifar_scale_b512": (512, 65, 6, 64),
    "b16_b256": (256, 197, 12, 64),
}
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def sdpa_path(backend):
    def attend(qkv: torch.Tensor, heads: int) -> torch.Tensor:
        B, N, three_d = qkv.shape
        q, k, v = qkv.reshape(B, N, 3, heads, three_d // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)
        with sdpa_kernel([backend]):
            out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(B, N, three_d // 3)
    return attend


def measure(fn, qkv: torch.Tensor, heads: int, backward: bool, compile: bool) -> float:
    compiled = torch.compile(fn) if compile else fn  # compiled: the transposes fused as in the model
    grad = torch.randn(qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3, device="cuda", dtype=qkv.dtype)

    def step():
        if backward:
            qkv.grad = None
            compiled(qkv, heads).backward(grad)
        else:
            with torch.no_grad():
                compiled(qkv, heads)
    # Replayed as a CUDA graph, so that the figure is the kernels' time and not the host's launches, which
    # are longer than the kernels at the small shapes (and the models run them in graphs there).
    return time_graph(step, calls=1, warmup=3, iters=20, repeats=5)


def candidates_for(tokens: int) -> dict[str, dict]:
    """Launch overrides to try (fields of tile_attention.Launch), by name."""
    if tokens <= 128:  # one tile of all keys: query block and warps, both kernels; class-split warps
        padded = {f"tile_m{m}_w{w}": {"block_m": m, "warps": w, "backward_block": m, "backward_warps": w,
                                      "class_split": False} for m, w in [(32, 4), (64, 4), (128, 4), (128, 8)]}
        if not ta.class_split_fits(tokens):
            return padded | {"tile_tail": {"tail": True}}  # the forward in whole blocks + a tail
        return padded | {f"tile_class_split_w{w}": {"warps": w, "backward_warps": w} for w in (2, 4, 8)}
    forward = {f"tile_fwd_m{m}_n{n}_w{w}_s{st}":
               {"block_m": m, "block_n": n, "warps": w, "forward_stages": st}
               for m, n, w, st in [(64, 32, 4, 1), (64, 32, 4, 2), (64, 32, 4, 3), (64, 32, 4, 4),
                                   (64, 64, 4, 2), (64, 64, 4, 4), (32, 32, 4, 3), (128, 32, 4, 3),
                                   (128, 32, 8, 2), (128, 64, 8, 2), (32, 64, 4, 3)]}
    backward = {f"tile_bwd_b{b}_s{t}_w{w}_st{st}":
                {"backward_block": b, "backward_step": t, "backward_warps": w, "backward_stages": st}
                for b, t, w, st in [(64, 64, 4, 3), (64, 64, 4, 1), (64, 64, 4, 2), (64, 64, 4, 4),
                                    (128, 32, 8, 2), (64, 32, 4, 2), (128, 64, 8, 1), (128, 64, 8, 2),
                                    (64, 128, 8, 2), (32, 64, 4, 3), (64, 64, 8, 2), (128, 128, 8, 1)]}
    return forward | backward


def main(shapes: list[str], match: list[str]) -> None:
    default_launch = ta.launch
    for shape in shapes:
        B, N, H, d = SHAPES[shape]
        qkv = torch.randn(B, N, 3 * H * d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        candidates = {f"sdpa_{name}": (sdpa_path(b), {}) for name, b in BACKENDS.items()}
        candidates["tile_default"] = (ta.tile_attention, {})
        candidates["tile_compiled"] = (ta.tile_attention, {})  # inside torch.compile, as in the model
        candidates |= {name: (ta.tile_attention, override) for name, override in candidates_for(N).items()}
        if match:
            candidates = {name: c for name, c in candidates.items() if any(text in name for text in match)}
        for name, (fn, override) in candidates.items():
            ta.launch = lambda n, hd, o=override: default_launch(n, hd)._replace(**o)
            torch._dynamo.reset()
            row = {"shape": shape, "batch": B, "tokens": N, "heads": H, "head_dim": d, "impl": name}
            try:
                sdpa = name.startswith("sdpa") or name == "tile_compiled"
                if "_bwd_" not in name:
                    row["fwd_ms"] = measure(fn, qkv, H, backward=False, compile=sdpa)
                if "_fwd_" not in name:
                    row["fwd_bwd_ms"] = measure(fn, qkv, H, backward=True, compile=sdpa)
            except Exception as e:  # noqa: BLE001 -- a backend that refuses the shape, a config that does not fit
                row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(json.dumps(row), flush=True)
    ta.launch = default_launch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="vitkit's attention kernels against SDPA's backends")
    parser.add_argument("shapes", nargs="*", metavar="SHAPE", help=f"any of {', '.join(SHAPES)} (default: all)")
    parser.add_argument("--match", action="append", default=[], help="keep candidates whose name contains this")
    args = parser.parse_intermixed_args()
    if unknown := set(args.shapes) - set(SHAPES):
        parser.error(f"unknown shapes {sorted(unknown)}; choose from {', '.join(SHAPES)}")
    main(args.shapes or list(SHAPES), args.match)

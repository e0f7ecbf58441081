"""The class-split attention kernels against the padded one-tile kernels, alone, on a GPU.

    PYTHONPATH=src python scripts/class_split_bench.py [--batch 512 --heads 6 --head-dim 64 --patches 64] [--sweep]

Defaults are the CIFAR-scale model (8 x 8 patches + the class token, 6 heads of 64) at batch 512.
Prints one JSON line per kernel set: median ms of the forward and of the backward (CUDA events), and
for the class-split kernels the registers per thread and the registers spilled (Triton's figures).
--sweep instead times the class-split kernels alone, replayed in CUDA graphs, over warps and a cap on
registers per thread (Triton's `maxnreg`: fewer registers, more programs resident per SM).
"""

from __future__ import annotations

import argparse
import json

import torch

from vitkit.bench import time_graph, time_steps
from vitkit.layers import tile_attention as ta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--patches", type=int, default=64)
    p.add_argument("--sweep", action="store_true")
    args = p.parse_args()
    B, H, d, N = args.batch, args.heads, args.head_dim, args.patches + 1
    scale, device = d**-0.5, torch.device("cuda")
    qkv = torch.randn(B, N, 3 * H * d, device=device, dtype=torch.bfloat16)
    out, lse = ta._forward(qkv, H, scale)
    grad_out, grad_qkv = torch.randn_like(out), torch.empty_like(qkv)
    if args.sweep:
        return sweep(qkv, out, lse, grad_out, grad_qkv, B, H, d, N, scale)
    for warps in (4, 8):
        def forward(warps=warps):
            return ta._class_split_forward_kernel[(B * H,)](qkv, out, lse, scale, HEADS=H, HEAD_DIM=d,
                                                             PATCHES=N - 1, num_warps=warps)

        def backward(warps=warps):
            return ta._class_split_backward_kernel[(B * H,)](qkv, out, grad_out, lse, grad_qkv, scale, HEADS=H,
                                                              HEAD_DIM=d, PATCHES=N - 1, num_warps=warps)
        fwd, bwd = forward(), backward()
        print(json.dumps({"kernels": "class_split", "warps": warps, "fwd_ms": time_steps(forward, device, 5, 20, 5),
                          "bwd_ms": time_steps(backward, device, 5, 20, 5), "fwd_regs": fwd.n_regs,
                          "fwd_spills": fwd.n_spills, "bwd_regs": bwd.n_regs, "bwd_spills": bwd.n_spills}), flush=True)
    default = ta.launch
    ta.launch = lambda n, hd: default(n, hd)._replace(class_split=False)
    try:
        print(json.dumps({"kernels": "padded_one_tile",
                          "fwd_ms": time_steps(lambda: ta._forward(qkv, H, scale), device, 5, 20, 5),
                          "bwd_ms": time_steps(lambda: ta._backward(qkv, out, grad_out, lse, H, scale), device,
                                               5, 20, 5)}), flush=True)
    finally:
        ta.launch = default


def sweep(qkv, out, lse, grad_out, grad_qkv, B, H, d, N, scale) -> None:
    """Graph-timed class-split kernels over warps x register caps (None: Triton's own allocation)."""
    for kernel, warps_options in (("fwd", (2, 4, 8)), ("bwd", (4, 8))):
        for warps in warps_options:
            for maxnreg in (None, 96, 128, 168):
                cap = {} if maxnreg is None else {"maxnreg": maxnreg}
                if kernel == "fwd":
                    def call(warps=warps, cap=cap):
                        return ta._class_split_forward_kernel[(B * H,)](qkv, out, lse, scale, HEADS=H, HEAD_DIM=d,
                                                                         PATCHES=N - 1, num_warps=warps, **cap)
                else:
                    def call(warps=warps, cap=cap):
                        return ta._class_split_backward_kernel[(B * H,)](
                            qkv, out, grad_out, lse, grad_qkv, scale, HEADS=H, HEAD_DIM=d, PATCHES=N - 1,
                            num_warps=warps, **cap)
                try:
                    compiled = call()
                    row = {"kernel": kernel, "warps": warps, "maxnreg": maxnreg, "ms": time_graph(call),
                           "regs": compiled.n_regs, "spills": compiled.n_spills}
                except Exception as error:  # noqa: BLE001 (a launch Triton cannot compile is a row, not the end)
                    row = {"kernel": kernel, "warps": warps, "maxnreg": maxnreg, "error": repr(error)[:200]}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

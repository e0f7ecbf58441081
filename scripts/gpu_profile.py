"""Where a training step's GPU time goes: kernel time per step by category (matmul, attention,
fused element-wise, other), for vitkit and timm side by side, compiled, bf16 autocast.

    python scripts/gpu_profile.py --model vit_b16 --img-size 224 --batch 256 --speed bf16_residual,patch_matmul
    python scripts/gpu_profile.py --model vit_s4 --img-size 32 --depth 7 --batch 512 ...
    python scripts/gpu_profile.py --model vit_ti4 --img-size 32 --impls vitkit --speed bf16_residual \
        --set embed_dim=192 --set depth=9 --set num_heads=12 --set mlp_dim=384 --set patch_size=5 --set stride=3

Prints one JSON line per implementation: wall ms per step (CUDA events), summed kernel ms per step
and per category (the gap between the two is time the GPU waited for the host), and the top kernels
with their launches per step. `--host-top N` also lists the host's N busiest operations, for a step
bound by the host (docs/benchmarks.md section 12). `--launchers REGEX` says which host operations
launch the kernels whose names match (e.g. 'Memset': who zeroes memory inside the step).
"""

from __future__ import annotations

import argparse
import json
import re

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from vitkit.bench import available, build_step, time_steps
from vitkit.variants import model_config

CATEGORIES = [  # first match wins; names of cuBLAS/CUTLASS/cuDNN/flash/triton kernels on Hopper
    ("attention", re.compile(r"flash|fmha|attention|sdpa|cudnn.*(mha|attn)", re.IGNORECASE)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|cublas|wgmma|matmul", re.IGNORECASE)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.IGNORECASE)),
    ("fused (triton)", re.compile(r"^triton_", re.IGNORECASE)),
]


def category(name: str) -> str:
    return next((label for label, pattern in CATEGORIES if pattern.search(name)), "other")


def profile_impl(impl: str, speed: str, args: argparse.Namespace, overrides: dict) -> dict:
    config = model_config(args.model, img_size=args.img_size, **overrides)
    step = build_step(impl, config, args.mode, args.batch, torch.device("cuda"), speed)
    wall = time_steps(step, torch.device("cuda"), warmup=8, iters=10, repeats=3)
    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if args.host_top or args.launchers else [])
    detail = bool(args.launchers)  # the launchers' input shapes and Python callers
    with profile(activities=activities, record_shapes=detail, with_stack=detail) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    kernels: dict[str, float] = {}
    counts: dict[str, int] = {}
    for evt in prof.key_averages():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            kernels[evt.key] = kernels.get(evt.key, 0.0) + evt.self_device_time_total / 1e3 / args.steps
            counts[evt.key] = counts.get(evt.key, 0) + evt.count
    by_cat: dict[str, float] = {}
    for name, ms in kernels.items():
        by_cat[category(name)] = by_cat.get(category(name), 0.0) + ms
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:args.top]
    host = {"host_top": host_ops(prof, args.steps, args.host_top)} if args.host_top else {}
    if args.launchers:
        host["launchers"] = launchers(prof, args.steps, re.compile(args.launchers))
    return {**host, "impl": f"{impl}[{speed}]" if speed else impl, "model": args.model, "batch": args.batch,
            "mode": args.mode, "wall_ms": round(wall, 3), "kernel_ms": round(sum(kernels.values()), 3),
            "by_category_ms": {k: round(v, 3) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
            "kernels_per_step": sum(counts.values()) // args.steps,
            # each: name, ms per step, category, launches per step
            "top": [(n[:90], round(ms, 3), category(n), counts[n] // args.steps) for n, ms in top]}


def host_ops(prof, steps: int, top: int) -> list[tuple[str, float, int]]:
    """The host's busiest operations: (name, self CPU ms per step, calls per step), most first.

    Self time, so nesting is not counted twice; the profiler's own overhead inflates every entry, so
    compare entries, not totals, with the unprofiled step. Custom ops (vitkit::...) include the Python
    that launches their kernels.
    """
    ops = [(evt.key[:90], evt.self_cpu_time_total / 1e3 / steps, evt.count // steps) for evt in prof.key_averages()
           if evt.device_type == torch.autograd.DeviceType.CPU and evt.self_cpu_time_total > 0]
    return [(name, round(ms, 3), calls) for name, ms, calls in sorted(ops, key=lambda op: -op[1])[:top]]


def launchers(prof, steps: int, pattern: re.Pattern) -> list[tuple[str, int]]:
    """(host operation [its input shapes] < its callers, launches per step) of the kernels whose names match,
    most first. The callers include Python frames (the profile records stacks), so the chain says which
    function of vitkit or of Inductor's generated code called the operation."""
    counts: dict[str, int] = {}
    for evt in prof.events():
        matching = [k for k in evt.kernels if pattern.search(k.name)]
        if not matching:
            continue
        chain, parent = [f"{evt.name} {evt.input_shapes}"], evt.cpu_parent
        while parent is not None and len(chain) < 6:
            chain.append(parent.name)
            parent = parent.cpu_parent
        key = " < ".join(name[:90] for name in chain)
        counts[key] = counts.get(key, 0) + len(matching)
    return [(key, n // steps) for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="vit_b16")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--mode", default="train", choices=("train", "infer"))
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="other model config fields, e.g. --set stride=3 --set num_heads=12")
    p.add_argument("--impls", default="vitkit,timm", help="comma-separated: vitkit, timm")
    p.add_argument("--speed", default="bf16_residual,patch_matmul")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--host-top", type=int, default=0,
                   help="also profile the host and list its N busiest operations (where a host-bound step goes)")
    p.add_argument("--launchers", default="", metavar="REGEX",
                   help="also say which host operations launch the kernels whose names match")
    args = p.parse_args()
    overrides = {"depth": args.depth} if args.depth else {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    for impl, speed in (("vitkit", args.speed), ("timm", "")):
        if impl in args.impls.split(",") and available(impl):
            print(json.dumps(profile_impl(impl, speed, args, overrides)), flush=True)


if __name__ == "__main__":
    main()

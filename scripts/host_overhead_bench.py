"""How much of a compiled training step is host (Python) work, and what removes it: vitkit and timm
at the CIFAR-scale shape, compiled three ways in one process (Inductor's default Python wrapper,
Inductor's C++ wrapper, CUDA graphs).

For each: images/s (CUDA-event timed, as `vitkit bench`), and the host milliseconds of one step
(wall time of the Python call that enqueues it, the GPU idle beforehand, median of 10). Where host
ms exceed the GPU's step time, the step is bound by the host.

    python scripts/host_overhead_bench.py [--speed bf16_residual,...] [--model vit_s4 --depth 7 --batch 512]
"""

from __future__ import annotations

import argparse
import json

import torch

from vitkit.bench import BUILDERS, host_step_ms, make_step, time_steps
from vitkit.variants import model_config

S7 = "bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm"


def measure(impl: str, speed: str, args: argparse.Namespace, how: str) -> dict:
    torch._dynamo.reset()
    torch._inductor.config.cpp_wrapper = how == "cpp_wrapper"
    config = model_config(args.model, img_size=args.img_size, depth=args.depth, num_classes=10)
    torch.manual_seed(0)
    model = BUILDERS[impl](config).cuda()
    if impl == "vitkit":
        from vitkit.speed import SpeedOptions, configure

        configure(model, SpeedOptions.parse(speed))
    mode = "reduce-overhead" if how == "cuda_graphs" else None
    runner = torch.compile(model, mode=mode, dynamic=False)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device="cuda")
    y = torch.randint(0, 10, (args.batch,), device="cuda")
    step = make_step(runner, "train", x, y, torch.bfloat16)
    ms = time_steps(step, torch.device("cuda"), warmup=10, iters=20, repeats=5)
    row = {"impl": impl, "speed": speed if impl == "vitkit" else "", "compile": how, "img_s": round(args.batch / ms * 1e3),
           "step_ms": round(ms, 3), "host_ms": round(host_step_ms(step, torch.device("cuda"), repeats=10), 3)}
    del model, runner, step
    torch.cuda.empty_cache()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="vit_s4")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--speed", default=S7)
    p.add_argument("--how", default="default,cpp_wrapper,cuda_graphs")
    p.add_argument("--impls", default="vitkit,timm", help="comma-separated: vitkit, timm")
    args = p.parse_args()
    for how in args.how.split(","):
        for impl in args.impls.split(","):
            try:
                print(json.dumps(measure(impl, args.speed, args, how)), flush=True)
            except Exception as e:  # noqa: BLE001 -- one way failing to compile is a result, the others still run
                print(json.dumps({"impl": impl, "compile": how, "error": f"{type(e).__name__}: {str(e)[:300]}"}),
                      flush=True)


if __name__ == "__main__":
    main()

r"""Build and run one compiled training step of a small vitkit model (CUDA, bf16 autocast), so that
TORCH_LOGS=output_code prints the code Inductor generated for it; grep that for the calls back into
ATen (what Inductor did not generate itself). A diagnostic.

    TORCH_LOGS=output_code PYTHONPATH=src python scripts/inductor_code_grep.py --speed ... 2>&1 \
        | grep -n "aten\.\|extern_kernels\|torch.ops\|\.sum(dim="

The last pattern catches the eager sums that finish Inductor's mix-order reductions, written as tensor
methods (docs/benchmarks.md section 17); round 12's grep, without it, missed them.
"""

from __future__ import annotations

import argparse

import torch

from vitkit.speed import SpeedOptions, compile_model, configure
from vitkit.variants import create_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--speed", default="")
    p.add_argument("--depth", type=int, default=1)
    args = p.parse_args()
    model = create_model("vit_s4", img_size=32, depth=args.depth, num_classes=10).cuda()
    configure(model, SpeedOptions.parse(args.speed))
    x = torch.randn(512, 3, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = compile_model(model)(x).float().logsumexp(-1).mean()
    loss.backward()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()

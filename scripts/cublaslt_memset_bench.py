"""Which of vitkit's cuBLASLt calls zero memory before their matmul, and what a workspace-free
algorithm costs instead. A measurement.

    PYTHONPATH=src python scripts/cublaslt_memset_bench.py

The CIFAR-scale training step launches 64 memsets (docs/benchmarks.md section 16); in a CUDA graph
each is a node of ~0.8 us plus the gap before the next kernel. cuBLASLt issues them for algorithms
that keep state in their workspace. With no workspace allowed, the heuristic proposes only algorithms
that need none. Prints one JSON line per (workspace, layer): ms per call as
CUDA-graph replays, and the kernels one call launches, memsets counted. Three ways to ask the heuristic:
within 32 MiB of workspace (the op's), within none, and both lists timed together.
"""

from __future__ import annotations

import collections
import functools
import json

import torch

from vitkit.bench import time_graph
from vitkit.layers import cublaslt

SHAPES = {"cifar": (512 * 65, 384, 1536), "b16": (256 * 197, 768, 3072)}  # tokens, width, hidden


def kernel_counts(step) -> dict[str, int]:
    """Kernels one call of `step` launches, with how many times (names cut to 70 characters)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return dict(collections.Counter(e.name[:70] for e in prof.events()
                                    if e.device_type == torch.autograd.DeviceType.CUDA))


def layers(tokens: int, width: int, hidden: int) -> dict:
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    x, res = torch.randn(tokens, width, **bf), torch.randn(tokens, width, **bf)
    h, pre = torch.randn(tokens, hidden, **bf), torch.randn(tokens, hidden, **bf)
    w1, b1 = torch.randn(hidden, width, **bf) / width**0.5, torch.randn(hidden, **bf)
    w2, b2 = torch.randn(width, hidden, **bf) / hidden**0.5, torch.randn(width, **bf)
    wp = torch.randn(width, width, **bf) / width**0.5
    return {"fc1 gelu_aux_bias": functools.partial(cublaslt.linear_gelu_aux, x, w1, b1),
            "fc2 dgelu": functools.partial(cublaslt.linear_dgelu, x, w2, pre),
            "proj + residual": functools.partial(cublaslt.linear_residual, x, wp, b2, res),
            "fc2 + residual": functools.partial(cublaslt.linear_residual, h, w2, b2, res)}


def main() -> None:
    full = cublaslt._WORKSPACE_BYTES
    for limits in ((full,), (0,), (full, 0)):  # the op's choice, none, both timed together
        cublaslt._WORKSPACE_LIMITS = limits
        cublaslt._runners.clear()  # plans (and their algorithm choice) are made again
        for shape, dims in SHAPES.items():
            torch.manual_seed(0)
            for layer, fn in layers(*dims).items():
                row = {"workspace_mib": [limit >> 20 for limit in limits], "shape": shape, "layer": layer}
                try:
                    row["ms"] = round(time_graph(fn), 4)
                    row["kernels"] = kernel_counts(fn)
                except cublaslt.CublasLtError as e:
                    row["error"] = str(e)[:200]
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

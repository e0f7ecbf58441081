"""vitkit's own operators in PyTorch's dispatcher, so that torch.compile can trace through them.

Registered with `torch.library.Library` rather than `torch.library.custom_op`, whose Python wrapper
costs the host more per call. Measured on a CPU, PyTorch 2.13 (scripts/op_dispatch_bench.py,
docs/benchmarks.md section 12): 26 us per call from a compiled graph against 57, 12 against 35
eager, 84 against 97 for an op with an autograd formula. A small model's compiled training step
calls these ops about 28 times, and on a slow host that step waits on Python (sections 12 and 13).

Each op has one kernel for every device (it picks its own path: Triton, cuBLASLt or plain PyTorch)
and a fake kernel that gives output shapes while tracing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_LIB = torch.library.Library("vitkit", "DEF")


def define(schema: str, kernel: Callable, fake: Callable) -> torch._ops.OpOverload:
    """Register `vitkit::<schema>` with `kernel` for every device and `fake` for tracing; returns the op."""
    name = schema.split("(", 1)[0]
    _LIB.define(schema)
    _LIB.impl(name, kernel, "CompositeExplicitAutograd")
    torch.library.register_fake(f"vitkit::{name}", fake, lib=_LIB)
    return getattr(torch.ops.vitkit, name).default


def register_autograd(op: torch._ops.OpOverload, backward: Callable, setup_context: Callable) -> None:
    """Give an op defined here its backward formula (torch.library.register_autograd's contract)."""
    torch.library.register_autograd(op, backward, setup_context=setup_context, lib=_LIB)

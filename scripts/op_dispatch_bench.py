"""Host cost of calling an operator registered with torch.library.custom_op against one registered
with torch.library.Library, from eager code and from a compiled graph. Runs on a CPU: the ops add
nothing but a tiny sum, so what is timed is the dispatch.

    python scripts/op_dispatch_bench.py     # one JSON line per (registration, call site), microseconds per call
"""

from __future__ import annotations

import json
import time

import torch

CALLS = 10  # op calls per compiled graph


def _sum_rows(x):
    return x.sum(0, dtype=torch.float32).to(x.dtype)


def _scale(x, heads, s):
    return x * s, x.sum(-1)


def _scale_fake(x, heads, s):
    return torch.empty_like(x), x.new_empty(x.shape[:-1])


def _setup(ctx, inputs, output):
    ctx.s = inputs[2]


def _scale_grad(ctx, grad, _grad_sums):
    return grad * ctx.s, None, None


def register() -> dict[str, tuple]:
    """Two ops, each both ways: a plain one (column sum) and one with an autograd formula."""
    lib = torch.library.Library("dispatch_probe", "DEF")
    lib.define("sum_rows(Tensor x) -> Tensor")
    lib.impl("sum_rows", _sum_rows, "CompositeExplicitAutograd")
    torch.library.register_fake("dispatch_probe::sum_rows", lambda x: x.new_empty(x.shape[1]), lib=lib)
    lib.define("scale(Tensor x, int heads, float s) -> (Tensor, Tensor)")
    lib.impl("scale", _scale, "CompositeExplicitAutograd")
    torch.library.register_fake("dispatch_probe::scale", _scale_fake, lib=lib)
    torch.library.register_autograd("dispatch_probe::scale", _scale_grad, setup_context=_setup, lib=lib)

    sum_rows = torch.library.custom_op("dispatch_probe_c::sum_rows", mutates_args=())(_typed_sum_rows)
    sum_rows.register_fake(lambda x: x.new_empty(x.shape[1]))
    scale = torch.library.custom_op("dispatch_probe_c::scale", mutates_args=())(_typed_scale)
    scale.register_fake(_scale_fake)
    scale.register_autograd(_scale_grad, setup_context=_setup)
    ops = torch.ops
    return {"library": (ops.dispatch_probe.sum_rows.default, ops.dispatch_probe.scale.default, lib),
            "custom_op": (ops.dispatch_probe_c.sum_rows.default, ops.dispatch_probe_c.scale.default, None)}


def _typed_sum_rows(x: torch.Tensor) -> torch.Tensor:
    return _sum_rows(x)


def _typed_scale(x: torch.Tensor, heads: int, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _scale(x, heads, s)


def per_call_us(fn, calls: int = 1, n: int = 2000) -> float:
    for _ in range(300):
        fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6 / calls)
    return round(best, 1)


def main() -> None:
    x = torch.randn(8, 8)
    for registration, (sum_rows, scale, _lib) in register().items():
        def plain_graph(x, op=sum_rows):
            y = x * 2
            for _ in range(CALLS):
                y = y + op(y).sum()
            return y

        def grad_graph(x, op=scale):
            y = x
            for _ in range(CALLS):
                y = op(y, 2, 0.5)[0] + 1
            return y.sum()

        compiled_plain, compiled_grad = torch.compile(plain_graph), torch.compile(grad_graph)
        x_grad = x.clone().requires_grad_()
        rows = {
            "eager, plain op": per_call_us(lambda op=sum_rows: op(x)),
            "compiled graph, plain op": per_call_us(lambda f=compiled_plain: f(x), CALLS),
            "compiled forward + backward, op with autograd": per_call_us(
                lambda f=compiled_grad, xg=x_grad: f(xg).backward(), CALLS),
        }
        for site, us in rows.items():
            print(json.dumps({"registration": registration, "call_site": site, "us_per_call": us}), flush=True)


if __name__ == "__main__":
    main()

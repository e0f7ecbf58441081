"""`vitkit bench`: throughput of vitkit next to timm / transformers on the same device."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from vitkit.cli.output import emit_json, human


@click.command("bench")
@click.option("--model", default="vit_b16", show_default=True)
@click.option("--img-size", default=224, show_default=True)
@click.option("--batch", default=256, show_default=True)
@click.option("--mode", "modes", multiple=True, type=click.Choice(["train", "infer"]), default=("train",),
              show_default=True, help="Repeat for both.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile every implementation.")
@click.option("--compare", default="", help="Peers, e.g. timm,hf (those not installed are skipped).")
@click.option("--device", default="auto", help="auto | cuda | cpu (cpu: keep sizes small).")
@click.option("--depth", type=int, default=None, help="Override the variant's depth.")
@click.option("--embed-dim", type=int, default=None, help="Override the variant's width.")
@click.option("--num-heads", type=int, default=None)
@click.option("--num-classes", type=int, default=1000, show_default=True)
@click.option("--warmup", default=5, show_default=True)
@click.option("--iters", default=10, show_default=True, help="Steps per timed block.")
@click.option("--repeats", default=5, show_default=True, help="Timed blocks; the median is reported.")
@click.option("--settle", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds of steps before timing each implementation: a GPU at its power cap (an H200 in "
                   "a long run) lowers its clocks within a second, so the default short window times the boost.")
@click.option("--speed", "speed_variants", multiple=True, default=("",),
              help="vitkit speed options to measure, e.g. cudnn,bf16_residual (repeat for several variants).")
@click.option("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs.")
@click.option("--json", "json_mode", is_flag=True)
def bench_cmd(model, img_size, batch, modes, compile_, compare, device, depth, embed_dim, num_heads, num_classes,
              warmup, iters, repeats, settle, speed_variants, compile_mode, json_mode):
    """Images/s, step time, peak memory, TFLOP/s and MFU for vitkit and its peers."""
    from vitkit.bench import host_bound, run_bench
    from vitkit.speed import SpeedOptions

    for variant in speed_variants:  # a typo should stop here, not after the other variants' measurements
        try:
            SpeedOptions.parse(variant)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--speed") from e
    overrides = {k: v for k, v in {"depth": depth, "embed_dim": embed_dim, "num_heads": num_heads,
                                   "num_classes": num_classes}.items() if v is not None}
    console = human(json_mode)
    report = run_bench(model, img_size, batch, tuple(modes), compile_, tuple(p for p in compare.split(",") if p),
                       device, warmup, iters, repeats, progress=lambda s: console.print(f"measuring {s} ..."),
                       speed_variants=tuple(speed_variants), compile_mode=compile_mode, settle_s=settle,
                       **overrides)
    ceiling = report["ceiling_tflops"]
    title = (f"{model} at {img_size}, batch {batch}, {report['env']['device']}"
             + (f", bf16 matmul ceiling {ceiling:.0f} TFLOP/s" if ceiling else ""))
    table = Table(title=title)
    for col in ("impl", "mode", "compiled", "img/s", "step ms", "host ms", "peak GiB", "TFLOP/s", "MFU"):
        table.add_column(col, justify="left" if col in ("impl", "mode") else "right")

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in report["results"]:
        host = fmt(r["host_ms"], ".2f") + (" *" if host_bound(r) else "")
        table.add_row(escape(r["impl"]), r["mode"], "yes" if r["compiled"] else "no", f"{r['img_s']:,.0f}",
                      f"{r['step_ms']:.2f}", host, fmt(r["peak_mem_gib"], ".2f"), fmt(r["tflops"], ".0f"),
                      fmt(r["mfu"] and 100 * r["mfu"], ".1f"))
    console.print(table)
    if any(host_bound(r) for r in report["results"]):
        console.print("* bound by the host: launching the step took about as long as running it, so the GPU "
                      "waited for Python; --compile-mode reduce-overhead (CUDA graphs) launches it in one call")
    if report["skipped"]:
        console.print(f"not installed, skipped: {', '.join(report['skipped'])}")
    if json_mode:
        emit_json(report)

"""`vitkit study data-scaling`: parse flags into a training recipe and call `vitkit.study.data_scaling`."""

from __future__ import annotations

from typing import Any

import click
import yaml

from vitkit.cli.output import emit_json, human
from vitkit.cli.train import parse_extra_overrides

LIST_OPTIONS = ("--models", "--fractions")


def expand_list_options(args: list[str], names: tuple[str, ...] = LIST_OPTIONS) -> list[str]:
    """['--models', 'a', 'b', '--json'] -> ['--models', 'a', '--models', 'b', '--json']: a list option
    takes every value up to the next option, as in `--models vit_ti4 bit_r26x1`."""
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            current = arg if arg in names else None
            if current is None:
                out.append(arg)
            continue
        if current is not None:
            out += [current, arg]
        else:
            out.append(arg)
    return out


class ListOptionsCommand(click.Command):
    """A command whose --models and --fractions take several values each."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_list_options(args))


@click.group()
def study() -> None:
    """The paper's scaling comparisons (ViT vs hybrid vs BiT ResNet) on your own data."""


@study.command("data-scaling", cls=ListOptionsCommand,
               context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.option("--data", required=True, help="digits | cifar10:PATH | cifar100:PATH | imagefolder:PATH")
@click.option("--models", multiple=True, required=True, metavar="MODEL...",
              help="Zoo names, each optionally with overrides: vit_ti4 bit_r26x1 'vit_s4:depth=6'.")
@click.option("--fractions", multiple=True, required=True, type=float, metavar="F...",
              help="Shares of the training split, e.g. 0.1 0.3 1.0 (nested, class-balanced subsets).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Study folder; running again with the same --out resumes it.")
@click.option("--epochs", type=float, default=None, help="Epochs of every run (over its own subset).")
@click.option("--img-size", type=int, default=None, help="Training and test resolution.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--seed", type=int, default=None, help="Chooses the subsets and the initialisations.")
@click.option("--device", default=None, help="auto | cpu | cuda")
@click.option("--preset", default=None, help="Training recipe: digits, small-data, paper-finetune, ...")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML training recipe.")
@click.option("--json", "json_mode", is_flag=True, help="Print {'results': [...]} on the last line of stdout.")
@click.pass_context
def data_scaling_cmd(ctx: click.Context, data: str, models: tuple[str, ...], fractions: tuple[float, ...], out: str,
                     preset: str | None, config_file: str | None, json_mode: bool, **flags: Any) -> None:
    """Train every model on every fraction of the training split, test each on the full test split,
    and plot accuracy against training images (paper Figs. 3-4) and training FLOPs (Fig. 5).

    Writes data_scaling.png, compute_scaling.png, results.json and results.csv into --out, and
    each run into --out/runs/. Any other training field can be set as --field value (e.g. --mixup 0.8).
    """
    from vitkit.study import StudyError, data_scaling
    from vitkit.train import TrainConfig, preset_values

    try:
        base = TrainConfig()
        if preset:
            base = base.with_overrides(preset_values(preset))
        if config_file:
            base = base.with_overrides(yaml.safe_load(open(config_file)) or {})
        explicit = {k: v for k, v in flags.items() if v is not None}
        if "epochs" in explicit:
            explicit["steps"] = None
        base = base.with_overrides({**explicit, **parse_extra_overrides(ctx.args)})
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from e
    console = human(json_mode)
    try:
        summary = data_scaling(data, models, fractions, out, base=base, console=console,
                               log=lambda msg: console.print(msg, highlight=False))
    except (StudyError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    table_rows = sorted(summary["results"], key=lambda r: (r["model"], r["fraction"]))
    for r in table_rows:
        console.print(f"{r['model']:>24s}  fraction {r['fraction']:<5g} {r['n_train']:>7,d} images  "
                      f"test top-1 {r['test_top1']:.4f}  {r['train_flops']:.3g} FLOPs")
    for path in summary["figures"].values():
        console.print(f"wrote {path}")
    if json_mode:
        emit_json(summary)

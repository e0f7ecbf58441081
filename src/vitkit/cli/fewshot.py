"""`vitkit fewshot CHECKPOINT --data SPEC --shots 1 5 10 25`: the paper's few-shot linear evaluation."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from vitkit.cli.common import CLASSES_HELP, DEVICE_OPTION, choose_data, load_checkpoint, load_data_for
from vitkit.cli.output import emit_json, human


@click.command("fewshot")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("more_shots", nargs=-1, type=int, metavar="")
@click.option("--data", default=None, help="digits | cifar10:PATH | cifar100:PATH | imagefolder:PATH [a run's own].")
@click.option("--classes", default=None, help=CLASSES_HELP)
@click.option("--shots", multiple=True, type=int, help="Images per class; more may follow: --shots 1 5 10 25.")
@click.option("--seeds", default=3, show_default=True, help="Draws of each n-shot sample (mean and spread).")
@click.option("--held-out", "held_out", default=0.1, show_default=True,
              help="Fraction of the training split held out to choose the regularisation.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--num-workers", default=4, show_default=True, help="For image folders read from disk.")
@DEVICE_OPTION
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def fewshot_cmd(checkpoint: Path, more_shots: tuple[int, ...], data: str | None, classes: str | None,
                shots: tuple[int, ...], seeds: int, held_out: float, batch_size: int, num_workers: int,
                device: str, json_mode: bool) -> None:
    """Few-shot linear accuracy of CHECKPOINT's frozen features on --data's test split.

    For each n in --shots and each seed: n training images per class, a closed-form L2-regularised
    least-squares fit onto {-1, 1} targets (strength chosen on a held-out part of the training
    split), accuracy on the test split. Reports the mean and standard deviation over seeds.
    """
    from vitkit.fewshot import fewshot_eval

    all_shots = list(shots) + list(more_shots) or [1, 5, 10, 25]
    if seeds < 1:
        raise click.BadParameter("need at least one seed", param_hint="--seeds")
    console = human(json_mode)
    model = load_checkpoint(checkpoint, device)
    choice = choose_data(checkpoint, data, classes)
    choice.val_fraction = held_out
    bundle, _ = load_data_for(model, choice, need_head=False)
    try:
        with console.status("few-shot evaluation..."):
            result = fewshot_eval(model, bundle, all_shots, list(range(seeds)), batch_size=batch_size,
                                  num_workers=num_workers, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    table = Table(title=f"few-shot linear accuracy of {checkpoint} on {bundle.source} "
                        f"({bundle.num_classes} classes, {result.n_test} test images, {seeds} seeds)")
    for col in ("shots", "mean", "std", "per seed", "l2 (per seed)"):
        table.add_column(col, justify="right")
    for n, r in result.shots.items():
        table.add_row(str(n), f"{100 * r.mean:.2f}%", f"{100 * r.std:.2f}",
                      " ".join(f"{100 * a:.1f}" for a in r.accuracies), " ".join(f"{v:g}" for v in r.l2))
    console.print(table)
    if json_mode:
        emit_json({**result.to_dict(), "data": bundle.source, "checkpoint": str(checkpoint),
                   "num_classes": bundle.num_classes})

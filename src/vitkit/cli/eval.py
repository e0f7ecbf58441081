"""`vitkit eval CHECKPOINT --data SPEC`: top-1/top-5, per-class accuracy, a confusion matrix picture."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from vitkit.cli.common import (CLASSES_HELP, DEVICE_OPTION, choose_data, load_checkpoint, load_data_for,
                               run_config, split_of)
from vitkit.cli.output import emit_json, human


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--data", default=None, help="digits | cifar10:PATH | cifar100:PATH | imagefolder:PATH [a run's own].")
@click.option("--classes", default=None, help=CLASSES_HELP)
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for confusion_<split>.png [the run directory, else the current folder].")
@click.option("--tta", type=click.Choice(["none", "flip"]), default="none", show_default=True,
              help="Test-time augmentation: 'flip' averages the logits of each image and its mirror.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--num-workers", default=4, show_default=True, help="For image folders read from disk.")
@DEVICE_OPTION
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def eval_cmd(checkpoint: Path, data: str | None, classes: str | None, split: str, out_dir: Path | None,
             tta: str, batch_size: int, num_workers: int, device: str, json_mode: bool) -> None:
    """Accuracy of CHECKPOINT on a split of --data (the test split by default).

    Preprocessing is the checkpoint's own: its resolution and normalisation. A run directory is a
    checkpoint, and its data and classes are the defaults for --data and --classes.
    """
    from vitkit.evaluate import evaluate_split
    from vitkit.plots import confusion_figure, save_figure

    console = human(json_mode)
    model = load_checkpoint(checkpoint, device)
    choice = choose_data(checkpoint, data, classes)
    bundle, warnings = load_data_for(model, choice)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    with console.status(f"evaluating on {split}..."):
        result = evaluate_split(model, split_of(bundle, split), bundle.num_classes, mean=bundle.mean,
                                std=bundle.std, batch_size=batch_size, num_workers=num_workers, tta=tta)
    out_dir = out_dir or (checkpoint if run_config(checkpoint) is not None else Path.cwd())
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{bundle.name} {split}{' (flip TTA)' if tta == 'flip' else ''}: top-1 {100 * result.top1:.2f}% of {result.n} images\n{checkpoint.name}"
    figure = confusion_figure(result.confusion, bundle.class_names, title)
    picture = save_figure(figure, out_dir / f"confusion_{split}.png")

    table = Table(title=f"{checkpoint} on {bundle.source} ({split}, {result.n} images)")
    for col in ("class", "images", "accuracy"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, row, acc in zip(bundle.class_names, result.confusion, result.per_class):
        table.add_row(name, str(sum(row)), f"{100 * acc:.2f}%")
    console.print(table)
    console.print(f"top-1 [bold]{100 * result.top1:.2f}%[/]  top-5 {100 * result.top5:.2f}%  loss {result.loss:.4f}  "
                  f"{result.images_per_s:,.0f} img/s; confusion matrix in {picture}")
    if json_mode:
        emit_json({**result.summary(), "split": split, "tta": tta, "data": bundle.source, "checkpoint": str(checkpoint),
                   "per_class": dict(zip(bundle.class_names, result.per_class)), "confusion": result.confusion,
                   "class_names": bundle.class_names, "confusion_png": str(picture)})

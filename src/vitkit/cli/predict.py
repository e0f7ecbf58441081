"""`vitkit predict CHECKPOINT IMAGE_OR_DIR... [--topk 5]`: class names and probabilities per image."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from vitkit.cli.common import DEVICE_OPTION, load_checkpoint
from vitkit.cli.output import emit_json, human


@click.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGE_OR_DIR...")
@click.option("--topk", default=5, show_default=True, help="Classes reported per image.")
@click.option("--batch-size", default=32, show_default=True, help="Images per forward pass.")
@DEVICE_OPTION
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def predict_cmd(checkpoint: Path, images: tuple[Path, ...], topk: int, batch_size: int, device: str,
                json_mode: bool) -> None:
    """Top classes of each image (folders: their image files), preprocessed as CHECKPOINT was trained.

    A file that cannot be read gets one error line and the rest still run; the exit status is
    non-zero only when no image could be predicted.
    """
    from vitkit.predict import predict_files

    console = human(json_mode)
    model = load_checkpoint(checkpoint, device)
    try:
        predictions = predict_files(model, images, topk=topk, batch_size=batch_size)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    table = Table(title=f"predictions of {checkpoint}")
    for col in ("image", "top class", "probability", "next"):
        table.add_column(col, justify="right" if col == "probability" else "left")
    for p in predictions:
        if p.error is not None:
            click.echo(f"error: {p.error}", err=True)
            continue
        (label, prob), rest = p.top[0], p.top[1:]
        table.add_row(p.path, label, f"{prob:.4f}", ", ".join(f"{lab} {q:.3f}" for lab, q in rest))
    ok = sum(p.error is None for p in predictions)
    if ok:
        console.print(table)
    console.print(f"{ok} of {len(predictions)} image(s) predicted")
    if json_mode:
        emit_json({"predictions": [p.to_dict() for p in predictions], "checkpoint": str(checkpoint)})
    if not ok:
        sys.exit(1)

"""`vitkit analyze`: the paper's "inside the ViT" figures for a checkpoint and some images."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from vitkit.cli.output import emit_json, human


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("more_images", nargs=-1, metavar="[IMAGE]...", type=click.Path(path_type=Path))
@click.option("--images", "-i", multiple=True, type=click.Path(path_type=Path),
              help="Image files or folders of images; more may follow, as in --images a.jpg b.png.")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNG figures and summary.json (created if missing).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when available.")
@click.option("--mean", type=float, multiple=True, help="Normalisation mean, once or per channel [the checkpoint's, else 0.5].")
@click.option("--std", type=float, multiple=True, help="Normalisation std, once or per channel [the checkpoint's, else 0.5].")
@click.option("--batch-size", default=32, show_default=True, help="Images per forward pass.")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def analyze(checkpoint: Path, more_images: tuple[Path, ...], images: tuple[Path, ...], out_dir: Path,
            device: str, mean: tuple[float, ...], std: tuple[float, ...], batch_size: int,
            json_mode: bool) -> None:
    """Embedding filters, position similarity, attention distance and attention maps (paper 4.5).

    Writes embedding_filters.png, position_similarity.png, attention_distance.png, one
    attention_<image>.png per image and summary.json into --out. Files that are not images are
    reported one line each and skipped.
    """
    import vitkit
    from vitkit.images import ImageError
    from vitkit.report import analyze as run_analysis

    paths = list(images) + list(more_images)
    if not paths:
        raise click.UsageError("give at least one image: --images PATH...")
    console = human(json_mode)
    errors = click.get_text_stream("stderr")
    try:
        model = vitkit.load_model(checkpoint)
    except Exception as e:  # any loader failure: one readable line, no traceback
        raise click.ClickException(f"could not load {checkpoint}: {e}") from e

    def log(msg: str) -> None:
        if msg.startswith("skipped "):
            click.echo(f"error: {msg.removeprefix('skipped ')}", file=errors)
        else:
            console.print(f"[dim]{msg}[/dim]")

    try:
        with console.status("analysing..."):
            summary = run_analysis(model, paths, out_dir, device=device, mean=mean or model.config.mean or 0.5,
                                   std=std or model.config.std or 0.5, batch_size=batch_size, log=log)
    except (ImageError, ValueError) as e:
        raise click.ClickException(str(e)) from e

    table = Table(title=f"mean attention distance (pixels) of {summary['model']['name']}")
    for col in ("layer", "min head", "mean", "max head"):
        table.add_column(col, justify="right")
    for i, row in enumerate(summary["mean_attention_distance"], start=1):
        table.add_row(str(i), f"{min(row):.1f}", f"{sum(row) / len(row):.1f}", f"{max(row):.1f}")
    console.print(table)
    figures = summary["figures"]
    for path in [v for k, v in figures.items() if k != "attention"] + figures["attention"]:
        console.print(f"wrote {path}")
    console.print(f"wrote {summary['summary']}")
    if "position_similarity_note" in summary:
        console.print(f"note: {summary['position_similarity_note']}")
    if json_mode:
        emit_json(summary)

"""Entry point: `vitkit COMMAND ...`."""

from __future__ import annotations

import click
from rich.table import Table

from vitkit.cli.output import emit_json, human


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vitkit")
def main() -> None:
    """vitkit: train, fine-tune, evaluate and inspect Vision Transformers."""


@main.command()
@click.option("--img-size", default=224, show_default=True, help="Resolution for tokens and GFLOPs.")
@click.option("--num-classes", default=1000, show_default=True, help="Classes of the head.")
@click.option("--filter", "pattern", default=None, help="Only names containing this text.")
@click.option("--family", type=click.Choice(["vit", "hybrid", "bit"]), default=None,
              help="Only one family: plain ViT, hybrid ViT (ResNet trunk) or BiT ResNet.")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def models(img_size: int, num_classes: int, pattern: str | None, family: str | None, json_mode: bool) -> None:
    """List the model zoo (ViT, hybrid, BiT) with parameters and forward GFLOPs."""
    from vitkit.variants import list_models
    from vitkit.zoo_table import zoo_rows

    names = [n for n in list_models(family) if pattern is None or pattern in n]
    if not names:
        raise click.ClickException(f"no model name contains {pattern!r}")
    rows = zoo_rows(img_size, num_classes, names)
    table = Table(title=f"vitkit models at {img_size}x{img_size}, {num_classes} classes")
    for col in ("name", "width", "depth", "heads", "patch", "tokens", "params (M)", "GFLOPs"):
        table.add_column(col, justify="left" if col == "name" else "right", no_wrap=col == "name")

    def cell(value) -> str:
        return "-" if value is None else str(value)

    for r in rows:
        if r.family == "bit":  # a ResNet: its depth and width multiplier, no tokens
            width, depth, patch = f"x{r.resnet_width}", f"R{r.resnet_depth}", f"/{r.feature_stride}"
        else:
            width, depth = str(r.embed_dim), str(r.depth)
            patch = str(r.patch_size) if r.family == "vit" else f"{r.patch_size} (/{r.feature_stride})"
        table.add_row(r.name, width, depth, cell(r.num_heads), patch, cell(r.tokens),
                      f"{r.params / 1e6:,.2f}", f"{r.gflops:,.2f}")
    human(json_mode).print(table)
    if json_mode:
        emit_json({"models": [r.to_dict() for r in rows]})


def _register() -> None:
    """Commands live in their own modules; importing them here keeps `vitkit --help` complete."""
    from vitkit.cli.analyze import analyze
    from vitkit.cli.bench import bench_cmd
    from vitkit.cli.eval import eval_cmd
    from vitkit.cli.export import export_cmd
    from vitkit.cli.fewshot import fewshot_cmd
    from vitkit.cli.finetune import finetune_cmd
    from vitkit.cli.predict import predict_cmd
    from vitkit.cli.study import study
    from vitkit.cli.train import train_cmd

    main.add_command(train_cmd, name="train")
    main.add_command(finetune_cmd, name="finetune")
    main.add_command(eval_cmd, name="eval")
    main.add_command(fewshot_cmd, name="fewshot")
    main.add_command(predict_cmd, name="predict")
    main.add_command(export_cmd, name="export")
    main.add_command(bench_cmd, name="bench")
    main.add_command(analyze)
    main.add_command(study)


_register()

"""`vitkit export CHECKPOINT --format onnx|safetensors|hf [--out PATH]`."""

from __future__ import annotations

from pathlib import Path

import click

from vitkit.cli.common import load_checkpoint
from vitkit.cli.output import emit_json, human
from vitkit.export import FORMATS


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx (dynamic batch), safetensors (vitkit's format) or hf (a transformers folder).")
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Output file (onnx; safetensors: a .safetensors file or a folder) or folder (hf) "
                   "[<name>.onnx, <name>.safetensors or <name>-hf in the current folder].")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON object on the last line.")
def export_cmd(checkpoint: Path, fmt: str, out: Path | None, json_mode: bool) -> None:
    """Write CHECKPOINT for another runtime and check that runtime reproduces its logits (within 1e-4).

    ONNX takes normalised pixels (batch, C, H, W); its metadata records img_size, mean, std and
    the class names. The hf folder loads with transformers' ViTForImageClassification.from_pretrained.
    """
    from vitkit.export import ExportError, default_out, export_model

    console = human(json_mode)
    out = out or default_out(checkpoint, fmt)
    if out.resolve() == checkpoint.resolve():
        raise click.UsageError("--out is the checkpoint itself; choose another path")
    model = load_checkpoint(checkpoint, "cpu")
    try:
        with console.status(f"exporting to {fmt}..."):
            result = export_model(model, fmt, out)
    except (ExportError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    diffs = result["max_abs_diff"]
    check = ("not checked: " + result.get("note", "")) if diffs is None else \
        "checked, max abs logit difference " + ", ".join(f"{v:.2e} (batch {b})" for b, v in diffs.items())
    console.print(f"wrote {result['out']} ({fmt}); {check}")
    if json_mode:
        emit_json({**result, "checkpoint": str(checkpoint)})

"""`vitkit finetune CHECKPOINT --data SPEC`: the training engine, started from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from vitkit.cli.train import build_config, flags_given, parse_extra_overrides, run_and_report, train_options

DEFAULT_PRESET = "paper-finetune"


@click.command(context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.argument("checkpoint", required=False, type=click.Path(exists=True, path_type=Path))
@train_options
@click.option("--resume", default=None, type=click.Path(exists=True, file_okay=False),
              help="Continue the fine-tuning run in this directory (give no CHECKPOINT).")
@click.pass_context
def finetune_cmd(ctx: click.Context, checkpoint: Path | None, config: str | None, preset: str | None,
                 resume: str | None, json: bool, **flags: Any) -> None:
    """Fine-tune CHECKPOINT (vitkit, timm, Hugging Face or .npz) on --data with a fresh zero head.

    At a new --img-size the patch size stays and the position embeddings are interpolated in 2D.
    The default recipe is the paper's (--preset paper-finetune: SGD momentum 0.9, no weight decay,
    clipping at norm 1, warm-up then cosine); any training flag or config field overrides it,
    e.g. --steps 500 --lr 0.003 --classes '[5, 6, 7, 8, 9]'.
    """
    extra = parse_extra_overrides(ctx.args)
    if resume:
        if checkpoint is not None or flags_given(flags, extra, config, preset):
            raise click.UsageError("--resume continues a run with its own saved config; give no CHECKPOINT or options")
        run_and_report(None, resume, json)
        return
    if checkpoint is None:
        raise click.UsageError("give the CHECKPOINT to fine-tune (or --resume RUN_DIR)")
    if flags.get("model") is not None:
        raise click.UsageError("finetune takes its model from CHECKPOINT; drop --model")
    if flags.get("data") is None and "data" not in extra and not config:
        raise click.UsageError("give the data to fine-tune on: --data digits | cifar10:PATH | imagefolder:PATH ...")
    from vitkit.train import finetune_config

    try:
        cfg = finetune_config(checkpoint, build_config(config, preset or DEFAULT_PRESET, flags, extra))
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise click.UsageError(str(e)) from e
    run_and_report(cfg, None, json)

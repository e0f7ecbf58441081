"""`vitkit train`: parse flags into a TrainConfig and call `vitkit.train.train`."""

from __future__ import annotations

from typing import Any

import click
import yaml

from vitkit.cli.output import emit_json, human

# Explicit flags (other commands and checks rely on these names); any other config field is
# accepted as `--field value` (e.g. `--mixup 0.8 --depth 6 --augment.erase 0.25`).
FLAG_FIELDS = ("data", "model", "img_size", "epochs", "steps", "batch_size", "lr", "seed", "device", "out",
               "checkpoint_every")


def parse_extra_overrides(args: list[str]) -> dict[str, Any]:
    """['--mixup', '0.8', '--compile'] -> {'mixup': 0.8, 'compile': True}; values parsed as YAML."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise click.UsageError(f"unexpected argument {arg!r}; overrides look like --field value")
        key, _, value = arg[2:].partition("=")
        if not value:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"
        out[key.replace("-", "_")] = yaml.safe_load(value)
        i += 1
    return out


def build_config(config_file: str | None, preset: str | None, flags: dict[str, Any], extra: dict[str, Any]):
    """Defaults < preset < config file < flags < extra overrides.

    Without a preset or config file, `digits` data (the default) gets the `digits` preset; other
    data starts from TrainConfig's defaults. Choosing --model drops the preset's width/depth.
    """
    from vitkit.train import TrainConfig, preset_values

    config = TrainConfig()
    explicit = {k: v for k, v in flags.items() if v is not None}
    if preset:
        config = config.with_overrides(preset_values(preset))
    elif not config_file and explicit.get("data", "digits") == "digits" and "model" not in explicit:
        config = config.with_overrides(preset_values("digits"))  # the default job
    if config_file:
        config = config.with_overrides(yaml.safe_load(open(config_file)) or {})
    if "model" in explicit and explicit["model"] != config.model:
        from vitkit.checkpoints.loader import FIXED_FIELDS
        from vitkit.variants import config_fields

        # a preset's width/depth belong to the preset's model; its regularisation still applies
        # where the chosen model has it (a ResNet has drop_path but no dropout)
        fields = config_fields(explicit["model"])
        config.model_overrides = {k: v for k, v in config.model_overrides.items()
                                  if k not in FIXED_FIELDS and k in fields}
    if "epochs" in explicit and "steps" not in explicit:
        explicit["steps"] = None  # --epochs on the command line wins over a preset's steps
    return config.with_overrides({**explicit, **extra})


def train_options(fn):
    """The shared flags of `train` and `finetune`."""
    for decl, kw in reversed([
        ("--config", dict(type=click.Path(exists=True, dir_okay=False), help="YAML run config.")),
        ("--preset", dict(default=None, help="Recipe: digits, paper-pretrain, paper-finetune, small-data, ...")),
        ("--data", dict(default=None, help="digits | cifar10:PATH | cifar100:PATH | imagefolder:PATH")),
        ("--model", dict(default=None, help="Zoo name, e.g. vit_s16.")),
        ("--img-size", dict(type=int, default=None, help="Training resolution.")),
        ("--epochs", dict(type=float, default=None)),
        ("--steps", dict(type=int, default=None, help="Optimiser steps (instead of epochs).")),
        ("--batch-size", dict(type=int, default=None, help="Global batch size.")),
        ("--lr", dict(type=float, default=None)),
        ("--seed", dict(type=int, default=None)),
        ("--device", dict(default=None, help="auto | cpu | cuda")),
        ("--out", dict(default=None, help="Run directory (default runs/<time>).")),
        ("--checkpoint-every", dict(type=int, default=None, help="Checkpoint every N optimiser steps.")),
        ("--json", dict(is_flag=True, help="Print the summary as one JSON object on the last line.")),
    ]):
        fn = click.option(decl, **kw)(fn)
    return fn


def run_and_report(config, resume: str | None, json_mode: bool) -> None:
    from vitkit.train import TrainingDiverged, train

    console = human(json_mode)
    try:
        summary = train(config, resume=resume, console=console)
    except (TrainingDiverged, FileExistsError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    if summary.get("world_size", 1) > 1 and not _is_rank0():
        return
    val = summary["val_top1"]
    console.print(
        f"[bold]done[/]: {summary['steps']} steps ({summary['epochs']:.1f} epochs) in {summary['seconds']:.1f} s, "
        f"{summary['images_per_s']:,.0f} img/s; val top-1 {'n/a' if val is None else f'{val:.4f}'}; "
        f"run in {summary['run_dir']}")
    if json_mode:
        emit_json(summary)


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


@click.command(context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@train_options
@click.option("--resume", default=None, type=click.Path(exists=True, file_okay=False),
              help="Continue the run in this directory from its last checkpoint.")
@click.pass_context
def train_cmd(ctx: click.Context, config: str | None, preset: str | None, resume: str | None, json: bool,
              **flags: Any) -> None:
    """Train a ViT classifier. Any config field can be set as --field value (e.g. --mixup 0.8)."""
    extra = parse_extra_overrides(ctx.args)
    if resume:
        if flags_given(flags, extra, config, preset):
            raise click.UsageError("--resume continues a run with its own saved config; give no other options")
        run_and_report(None, resume, json)
        return
    try:
        cfg = build_config(config, preset, flags, extra)
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from e
    run_and_report(cfg, None, json)


def flags_given(flags: dict[str, Any], extra: dict[str, Any], config: str | None, preset: str | None) -> bool:
    return bool(extra or config or preset or any(v is not None for v in flags.values()))

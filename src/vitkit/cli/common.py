"""Plumbing shared by the commands that run a checkpoint on data: eval, fewshot, predict, export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import yaml

DEVICE_OPTION = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                             show_default=True, help="auto: CUDA when available.")
CLASSES_HELP = "Class ids to keep, relabelled 0..k-1 in this order, e.g. 5,6,7,8,9 [a run's own]."


def load_checkpoint(path: Path, device: str = "auto"):
    """`vitkit.load_model(path)` on the device, in eval mode; any failure is one readable line."""
    import vitkit
    from vitkit.report import resolve_device

    try:
        dev = resolve_device(device)
        model = vitkit.load_model(path)
    except Exception as e:  # any loader failure: one readable line, no traceback
        raise click.ClickException(f"could not load {path}: {e}") from e
    return model.to(dev).eval()


def run_config(path: Path):
    """The TrainConfig of a run directory, or None for any other checkpoint."""
    from vitkit.train import TrainConfig

    cfg = Path(path) / "config.yaml"
    if Path(path).is_dir() and cfg.is_file() and (Path(path) / "latest.json").is_file():
        return TrainConfig.load(cfg)
    return None


def parse_classes(text: str | None) -> list[int] | None:
    """'5,6,7' or '[5, 6, 7]' or '5 6 7' -> [5, 6, 7]."""
    if text is None:
        return None
    value = yaml.safe_load(text if text.strip().startswith("[") else "[" + text.replace(" ", ",") + "]")
    try:
        return [int(v) for v in value if v is not None]
    except (TypeError, ValueError):
        raise click.BadParameter(f"expected class ids like 5,6,7, got {text!r}") from None


@dataclass
class DataChoice:
    """What data to load, with a run directory's own settings filling what was not given."""

    spec: str
    classes: list[int] | None
    seed: int
    val_fraction: float


def choose_data(checkpoint: Path, data: str | None, classes: str | None) -> DataChoice:
    """--data/--classes as given; for a run directory, missing ones come from its config (its
    classes only when the data is the run's own), and so do the seed and validation fraction that
    define its val split."""
    run = run_config(checkpoint)
    if data is None and run is None:
        raise click.UsageError("give --data (digits | cifar10:PATH | cifar100:PATH | imagefolder:PATH)")
    spec = data or run.data
    chosen = parse_classes(classes)
    if chosen is None and run is not None and run.data == spec:
        chosen = run.classes
    seed = run.seed if run is not None else 0
    val_fraction = run.val_fraction if run is not None and run.val_fraction > 0 else 0.1
    return DataChoice(spec, chosen, seed, val_fraction)


def load_data_for(model, choice: DataChoice, need_head: bool = True):
    """The data bundle at the model's resolution, checked against the model (channels, classes)."""
    from vitkit.data import load_data
    from vitkit.evaluate import check_compatible

    try:
        data = load_data(choice.spec, val_fraction=choice.val_fraction, seed=choice.seed,
                         image_size=model.config.img_size, classes=choice.classes)
        warnings = check_compatible(model.config, data, need_head)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    return data, warnings


def split_of(data, name: str):
    split = getattr(data, name)
    if split is None:
        raise click.ClickException(f"{data.source or data.name} has no {name} split")
    return split

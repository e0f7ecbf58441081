"""The paper's scaling comparison on your own data: test accuracy against the number of training
images (Figures 3 and 4) and against training compute (Figure 5), for ViTs, hybrids and BiT ResNets.

`data_scaling(data, models, fractions, out)` trains every model on nested, class-balanced subsets of
the training split (`vitkit.data.splits.nested_subset`: the same images for every model, each
subset inside the larger ones), each run through `vitkit.train.train` into OUT/runs/<model>_<fraction>,
evaluates it on the full test split, and counts its training FLOPs as 3 x the forward FLOPs per
image (counted by PyTorch's FLOP counter) x the images seen. After each run the results are
written to OUT/results.json and OUT/results.csv, so a study that stopped resumes where it was:
finished runs are not redone, an interrupted one continues from its last checkpoint.

    vitkit study data-scaling --data digits --models vit_ti4 vit_r26_ti16 bit_r26x1 \\
        --fractions 0.1 0.3 1.0 --img-size 16 --epochs 30 --out study_digits
    (a CPU-sized example, not yet timed; tests/test_study.py runs a tiny one in seconds)
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from vitkit.checkpoints.native import atomic_write_bytes
from vitkit.train.config import TrainConfig

RESULTS_JSON, RESULTS_CSV, SETTINGS = "results.json", "results.csv", "study.json"
FIGURES = {"data_scaling": "data_scaling.png", "compute_scaling": "compute_scaling.png"}
# TrainConfig fields each run sets itself; every other field is the study's recipe and must not
# change between a study and its resumption.
PER_RUN_FIELDS = ("model", "model_overrides", "data", "val_fraction", "train_fraction", "out", "progress",
                  "device", "preset", "num_workers")


class StudyError(ValueError):
    """A study that cannot run as asked; the message says why and what to do."""


@dataclass
class RunResult:
    """One trained and tested model at one training-set fraction."""

    model: str  # the model spec as given, e.g. "bit_r26x1" or "vit_ti4:depth=6"
    fraction: float
    n_train: int  # training images actually used
    test_top1: float
    train_flops: int  # 3 x forward FLOPs per image x images seen
    family: str  # "vit", "hybrid" or "bit"
    params: int
    steps: int
    batch_size: int
    forward_flops: int  # per image, at the training resolution
    seconds: float  # training wall-clock
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """'vit_ti4:depth=6,embed_dim=96' -> ('vit_ti4', {'depth': 6, 'embed_dim': 96}).

    Values are YAML, so lists and dicts work: 'bit_r26x1:layers=[1,1],stage_widths=[32,64]'.
    """
    name, _, rest = spec.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in split_top_level(rest))):
        key, eq, value = item.partition("=")
        if not eq:
            raise StudyError(f"model spec {spec!r}: expected FIELD=VALUE after ':', got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise StudyError(f"model spec {spec!r}: cannot read the value of {key.strip()}: {e}") from e
    return name.strip(), overrides


def split_top_level(text: str) -> list[str]:
    """Split on the commas that are not inside [...] or {...}."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def run_name(spec: str, fraction: float) -> str:
    """A folder name for one run: 'vit_ti4:depth=6' at 0.3 -> 'vit_ti4-depth6_0.3'."""
    safe = re.sub(r"[^A-Za-z0-9_.]+", "-", spec.replace("=", "")).strip("-")
    return f"{safe}_{fraction:g}"


def check_fractions(fractions: Sequence[float]) -> list[float]:
    out = sorted({float(f) for f in fractions})
    if not out or out[0] <= 0 or out[-1] > 1:
        raise StudyError(f"fractions must be in (0, 1], got {list(fractions)}")
    return out


def study_settings(data: str, base: TrainConfig) -> dict[str, Any]:
    recipe = {k: v for k, v in base.to_dict().items() if k not in PER_RUN_FIELDS}
    return {"data": data, "train": recipe}


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Record the study's data and recipe; refuse to mix runs of another recipe into one folder."""
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old["train"]) | set(settings["train"])
                          if old["train"].get(k) != settings["train"].get(k))
            what = (["data"] if old["data"] != settings["data"] else []) + diff
            raise StudyError(f"{out} holds a study with other settings ({', '.join(what)}); re-run it with "
                             "the same settings to resume it, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))


def load_results(out: Path) -> list[RunResult]:
    path = out / RESULTS_JSON
    if not path.is_file():
        return []
    return [RunResult(**row) for row in json.loads(path.read_text())["results"]]


def write_results(out: Path, results: list[RunResult]) -> None:
    """results.json and results.csv, each replaced atomically."""
    rows = [r.to_dict() for r in results]
    atomic_write_bytes(out / RESULTS_JSON, lambda tmp: Path(tmp).write_text(json.dumps({"results": rows}, indent=2)))

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(RunResult.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write_bytes(out / RESULTS_CSV, write_csv)


def write_figures(out: Path, results: list[RunResult]) -> dict[str, str]:
    from vitkit import plots

    rows = [r.to_dict() for r in results]
    paths = {
        "data_scaling": plots.save_figure(plots.data_scaling_figure(rows), out / FIGURES["data_scaling"]),
        "compute_scaling": plots.save_figure(plots.compute_scaling_figure(rows), out / FIGURES["compute_scaling"]),
    }
    return {k: str(v) for k, v in paths.items()}


def run_config(base: TrainConfig, data: str, spec: str, fraction: float, run_dir: Path) -> TrainConfig:
    """The TrainConfig of one run: the study's recipe, this model, this subset, nothing held out."""
    from vitkit.checkpoints.loader import FIXED_FIELDS
    from vitkit.variants import config_fields, model_config

    name, spec_overrides = parse_model_spec(spec)
    fields = config_fields(name)
    # The recipe's regularisation (e.g. drop_path) applies where the model has it; its shapes do not.
    overrides = {k: v for k, v in base.model_overrides.items() if k in fields and k not in FIXED_FIELDS}
    overrides.update(spec_overrides)
    try:
        model_config(name, **overrides)  # a bad name or field fails here, before any training
    except (TypeError, ValueError) as e:
        raise StudyError(f"model {spec!r}: {e}") from e
    return base.with_overrides(dict(model=name, model_overrides=overrides, data=data, val_fraction=0.0,
                                    train_fraction=fraction, out=str(run_dir)))


def train_run(config: TrainConfig, run_dir: Path, console) -> dict[str, Any]:
    """Train one run, or continue it if an earlier study stopped inside it; returns its summary."""
    from vitkit.train import train
    from vitkit.train.state import latest_checkpoint

    pointer = latest_checkpoint(run_dir)
    if pointer is None:
        return train(config, console=console)
    if not pointer.get("final"):
        return train(config, resume=run_dir, console=console)
    if not (run_dir / "summary.json").is_file():
        raise StudyError(f"{run_dir} holds final weights but no summary.json (stopped while finishing); "
                         "delete that folder and run the study again to redo this run")
    return json.loads((run_dir / "summary.json").read_text())


def evaluate_run(run_dir: Path, test_split, num_classes: int, config: TrainConfig) -> tuple[torch.nn.Module, float]:
    """(model, top-1 on the full test split) of a finished run, preprocessed as it was trained."""
    from vitkit.augment import preprocess_eval
    from vitkit.checkpoints import load_model
    from vitkit.evaluate import evaluate, split_batches
    from vitkit.train.loop import resolve_device

    device = resolve_device(config.device)
    model = load_model(run_dir).to(device)
    c = model.config
    amp = torch.bfloat16 if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda") else None
    batches = split_batches(test_split, config.eval_batch_size, device, config.num_workers)
    result = evaluate(model, batches, num_classes, lambda u8: preprocess_eval(u8, c.img_size, c.mean, c.std), amp)
    return model, result.top1


def data_scaling(data: str, models: Sequence[str], fractions: Sequence[float], out: str | Path, *,
                 base: TrainConfig | None = None, console=None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the data-scaling study; returns {"results": [...], "figures": {...}, "out": ...}.

    base: the training recipe shared by every run (epochs, img_size, batch_size, lr, augmentation,
    seed, device, ...); its model fields are ignored, each model spec brings its own.
    """
    from vitkit.data import load_data
    from vitkit.data.splits import nested_subset
    from vitkit.flops import count_forward_flops
    from vitkit.variants import model_family

    base = base or TrainConfig()
    if base.init_checkpoint:
        raise StudyError("the study trains every model from scratch; unset init_checkpoint")
    say = log or (lambda _msg: None)
    out = Path(out)
    fractions = check_fractions(fractions)
    if not models:
        raise StudyError("give at least one model")
    if len(set(models)) != len(models):
        raise StudyError(f"a model is listed twice: {list(models)}")
    check_settings(out, study_settings(data, base))
    bundle = load_data(data, val_fraction=0.0, seed=base.seed, image_size=base.img_size, classes=base.classes)
    sizes = {f: len(nested_subset(bundle.train.labels, f, base.seed)) for f in fractions}
    for f, n in sizes.items():
        if n < base.batch_size:
            raise StudyError(f"fraction {f:g} of {data} leaves {n} training images, fewer than the batch size "
                             f"{base.batch_size}; use larger fractions or a smaller --batch-size")
    configs = {(spec, f): run_config(base, data, spec, f, out / "runs" / run_name(spec, f))
               for spec in models for f in fractions}  # every spec checked before the first run
    results = load_results(out)
    done = {(r.model, r.fraction) for r in results}
    todo = [key for key in configs if key not in done]
    say(f"{len(configs) - len(todo)} of {len(configs)} runs already done in {out}")
    for i, (spec, f) in enumerate(todo, start=1):
        run_dir = Path(configs[spec, f].out)  # type: ignore[arg-type]
        say(f"[{i}/{len(todo)}] {spec} on {sizes[f]} images (fraction {f:g}) -> {run_dir}")
        summary = train_run(configs[spec, f], run_dir, console)
        model, top1 = evaluate_run(run_dir, bundle.test, bundle.num_classes, configs[spec, f])
        forward = count_forward_flops(model.config)
        images_seen = summary["steps"] * configs[spec, f].batch_size
        results.append(RunResult(
            model=spec, fraction=f, n_train=summary["n_train"], test_top1=top1, train_flops=3 * forward * images_seen,
            family=model_family(parse_model_spec(spec)[0]), params=summary["params"], steps=summary["steps"],
            batch_size=configs[spec, f].batch_size, forward_flops=forward, seconds=summary["seconds"],
            run_dir=str(run_dir)))
        write_results(out, results)  # after every run: a re-run skips what is here
        say(f"    test top-1 {top1:.4f}, {results[-1].train_flops:.3g} training FLOPs")
    write_results(out, results)
    figures = write_figures(out, results)
    return {"results": [r.to_dict() for r in results], "figures": figures, "out": str(out)}

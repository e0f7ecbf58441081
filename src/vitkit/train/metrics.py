"""Run metrics: one JSON line per log step and per evaluation, optional TensorBoard, curves.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends to RUN_DIR/metrics.jsonl (kept across resumes); mirrors scalars to TensorBoard if asked."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, resume_step: int = 0) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step and self.path.exists():
            # drop lines written after the checkpoint we resume from: they will be written again
            lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                pass  # TensorBoard is optional: metrics.jsonl still has everything

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def plot_curves(metrics_path: Path, out_path: Path) -> Path:
    """curves.png: training loss (left) and accuracy (right) against optimiser steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if val:
        ax_loss.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="val loss")
        ax_acc.plot([r["step"] for r in val], [r["top1"] for r in val], "o-", label="val top-1")
    if train and "top1" in train[0]:
        ax_acc.plot([r["step"] for r in train], [r["top1"] for r in train], alpha=0.6, label="train top-1 (augmented)")
    ax_loss.set(title="Loss", xlabel="optimiser step", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="optimiser step", ylabel="top-1", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path

"""One line per run of a sweep: final/best validation accuracy, steps, steady images/s, seconds, and
training accuracy on augmented batches over the last 10% of the logged steps.

Usage: python scripts/sweep_summary.py DIR   (DIR holds NAME.metrics.jsonl and NAME.json files)
"""

import json
import sys
from pathlib import Path


def summarise(directory: Path) -> None:
    for metrics in sorted(directory.glob("*.metrics.jsonl")):
        name = metrics.name.removesuffix(".metrics.jsonl")
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        train = [r for r in rows if r["kind"] == "train"]
        val = [r for r in rows if r["kind"] == "val"]
        late = sorted(r["images_per_s"] for r in train[len(train) // 2:]) or [0.0]
        tail = train[len(train) - len(train) // 10:] or [{"top1": 0.0}]
        summary_file = directory / f"{name}.json"
        try:
            summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        except json.JSONDecodeError:
            summary = {}
        print(f"{name:20s} step {train[-1]['step'] if train else 0:6d} epoch {val[-1]['epoch'] if val else 0:6.1f} "
              f"val {val[-1]['top1'] if val else 0:.4f} best {max((v['top1'] for v in val), default=0):.4f} "
              f"img/s {late[len(late) // 2]:7.0f} seconds {summary.get('seconds') or 0:6.1f} "
              f"train {sum(r['top1'] for r in tail) / len(tail):.3f} "
              f"{'done' if summary else 'CUT SHORT'}")


if __name__ == "__main__":
    summarise(Path(sys.argv[1]))

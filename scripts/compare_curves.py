"""How far a training run's loss curve is from a reference run's (same seed, same logging steps).

Usage: python scripts/compare_curves.py REFERENCE.metrics.jsonl OTHER.metrics.jsonl [...]
Prints, per other run: points compared, max / mean absolute loss difference, max relative
difference, final losses, and the reference's own mean change between consecutive points (its noise).
"""

import json
import statistics
import sys
from pathlib import Path


def train_losses(path: str) -> list[tuple[int, float]]:
    rows = (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]


def main(reference: str, others: list[str]) -> None:
    ref = train_losses(reference)
    noise = statistics.mean(abs(b - a) for (_, a), (_, b) in zip(ref, ref[1:]))
    print(f"{Path(reference).name}: {len(ref)} points, final loss {ref[-1][1]:.4f}, "
          f"mean change between consecutive points {noise:.4f}")
    for other in others:
        run = train_losses(other)
        if [s for s, _ in run] != [s for s, _ in ref]:
            raise SystemExit(f"{other} logged other steps than {reference}")
        diffs = [abs(a - b) for (_, a), (_, b) in zip(ref, run)]
        rel = max(d / a for d, (_, a) in zip(diffs, ref))
        print(f"{Path(other).name}: max |diff| {max(diffs):.4f}, mean |diff| {statistics.mean(diffs):.4f}, "
              f"max relative {100 * rel:.1f}%, final loss {run[-1][1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

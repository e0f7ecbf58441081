"""What every loader returns: splits (in memory or streamed) and the facts a trainer needs about them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


class DataError(ValueError):
    """A data set that cannot be used as asked; the message says what was found and what to do."""


class DataWarning(UserWarning):
    """Something in a data set was skipped (an unreadable file); training goes on without it."""


@dataclass
class ArraySplit:
    """An in-memory split: the whole thing as one tensor, moved to the device and augmented there."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"ArraySplit.images must be uint8 (N, C, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"ArraySplit.labels must have shape ({self.images.shape[0]},), "
                            f"got {tuple(self.labels.shape)}")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> ArraySplit:
        """The rows at `index` (a copy)."""
        return ArraySplit(self.images[index], self.labels[index])


Split = ArraySplit | Dataset


@dataclass
class DataBundle:
    """A data set ready for training: train/val/test splits plus classes, channels and statistics."""

    name: str  # "digits", "cifar10", "cifar100", "imagefolder"
    num_classes: int
    class_names: list[str]
    in_chans: int  # 1 or 3
    image_size: tuple[int, int]  # native (H, W) of the stored images (folder: the resize target)
    mean: tuple[float, ...]  # per channel, [0, 1] units, of the full training split (before `classes`)
    std: tuple[float, ...]
    train: Split
    val: Split | None  # carved from the training split by the run seed; None when val_fraction=0
    test: Split  # fixed: never depends on the run seed; only eval/fewshot should look at it
    in_memory: bool  # True when the splits are ArraySplit
    skipped_files: int = 0  # unreadable files left out while indexing (image folders)
    source: str = ""  # where it came from (the spec, with the resolved path)

    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": 0 if self.val is None else len(self.val),  # type: ignore[arg-type]
                "test": len(self.test)}  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line for logs: classes, split sizes, image shape, skipped files."""
        s = self.split_sizes()
        h, w = self.image_size
        text = (f"{self.name}: {self.num_classes} classes, {s['train']} train / {s['val']} val / "
                f"{s['test']} test, {self.in_chans}x{h}x{w} uint8, "
                f"{'in memory' if self.in_memory else 'streamed from disk'}")
        if self.skipped_files:
            text += f", {self.skipped_files} unreadable file(s) skipped"
        return text


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over all pixels of uint8 (N, C, H, W), in [0, 1] units.

    Works in float64 chunks so CIFAR-size sets never need a float copy of the whole tensor.
    """
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0  # (n, C, H, W)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)  # a constant channel: no /0
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def check_classes(classes: list[int], num_classes: int) -> list[int]:
    """Validate a class subset: ids in range, no repeats, at least two."""
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise DataError(f"classes {bad} out of range: this data set has class ids 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise DataError(f"classes has repeats: {classes}")
    if len(classes) < 2:
        raise DataError(f"classes must name at least two classes to classify, got {classes}")
    return classes


def relabel_table(classes: list[int], num_classes: int) -> torch.Tensor:
    """A lookup table old id -> new id (position in `classes`), -1 for dropped classes."""
    table = torch.full((num_classes,), -1, dtype=torch.int64)
    table[torch.tensor(classes, dtype=torch.int64)] = torch.arange(len(classes))
    return table


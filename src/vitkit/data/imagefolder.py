"""A folder of images, one sub-folder per class, streamed from disk at a fixed size.

Layouts: ROOT/<class>/<image> (the test split is then a fixed seeded 20%), or ROOT/train/<class>/...
with ROOT/val/ and/or ROOT/test/ beside it. Every file is checked once while indexing (in threads);
an unreadable one is skipped, counted and reported in one warning, never met mid-epoch.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from vitkit.data.bundle import DataError, DataWarning, channel_stats
from vitkit.data.images import is_gray_mode, load_image, probe

Sample = tuple[str, int]  # (path, class id)
MAX_SUBSTITUTES = 16  # consecutive unreadable files tolerated by __getitem__ before it gives up
STATS_SAMPLE = 256  # images decoded to estimate the normalisation statistics


class ImageFolderDataset(Dataset):
    """Items are (uint8 (C, H, W) tensor at `size`, class id); `labels` holds every item's class."""

    def __init__(self, samples: list[Sample], size: tuple[int, int], channels: int, class_names: list[str]):
        self.paths = [p for p, _ in samples]
        self.labels = torch.tensor([c for _, c in samples], dtype=torch.int64)
        self.size = size
        self.channels = channels
        self.class_names = class_names
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # A file that passed indexing can still fail to decode (damage inside the pixel data, or
        # changed since): warn once and serve the next item instead, so an epoch never dies here.
        for attempt in range(MAX_SUBSTITUTES):
            j = (i + attempt) % len(self.paths)
            try:
                return load_image(self.paths[j], self.size, self.channels), int(self.labels[j])
            except Exception as e:  # Pillow raises many types for damaged files
                if self.paths[j] not in self._reported:
                    self._reported.add(self.paths[j])
                    warnings.warn(f"{self.paths[j]}: cannot be decoded ({e}); serving the next image "
                                  "in its place", DataWarning, stacklevel=2)
        raise DataError(f"{MAX_SUBSTITUTES} consecutive images from {self.paths[i]} on cannot be decoded; "
                        "is the folder still readable?")

    def subset(self, index: torch.Tensor) -> ImageFolderDataset:
        """The items at `index`, as a new data set."""
        picked = [(self.paths[k], int(self.labels[k])) for k in index.tolist()]
        return ImageFolderDataset(picked, self.size, self.channels, self.class_names)


@dataclass
class FolderIndex:
    """What indexing found: class names and the readable (path, class) pairs of each split folder."""

    root: Path
    class_names: list[str]
    train: list[Sample]
    val: list[Sample] | None  # ROOT/val/ when ROOT/test/ is the test split
    test: list[Sample] | None  # ROOT/test/, else ROOT/val/; None: carve one from train
    gray: bool  # every readable image is grayscale -> 1 channel
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_files(class_dir: Path) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return files


def _candidates(split_dir: Path, class_names: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, (file, class id) for every visible file) of one split folder."""
    dirs = _visible_dirs(split_dir)
    names = [d.name for d in dirs] if class_names is None else class_names
    unknown = sorted(d.name for d in dirs if d.name not in names)
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) {unknown} do not exist in the training split "
                        f"(classes: {names})")
    files = [(f, names.index(d.name)) for d in dirs for f in _class_files(d)]
    return names, files


def _probe_all(paths: list[str]) -> list[str | Exception]:
    def check(path: str) -> str | Exception:
        try:
            return probe(path)
        except Exception as e:  # anything Pillow cannot open is one skipped file, not a crash
            return e

    with ThreadPoolExecutor(max_workers=min(32, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(check, paths, chunksize=64))


def index_folder(root: Path) -> FolderIndex:
    """Find classes and split folders, and check every file; loud errors for unusable layouts."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; imagefolder:PATH needs PATH/<class>/<image files>")
    split_mode = (root / "train").is_dir()
    if not split_mode and any((root / s).is_dir() for s in ("val", "test")):
        raise DataError(f"{root}: has val/ or test/ but no train/; "
                        f"put the training images in {root / 'train'}")
    train_dir = root / "train" if split_mode else root
    class_names, train_files = _candidates(train_dir, None)
    if not class_names:
        raise DataError(f"{train_dir}: no class folders; expected {train_dir}/<class name>/<image files>")
    held_dirs = [s for s in ("val", "test") if split_mode and (root / s).is_dir()]
    extra = {s: _candidates(root / s, class_names)[1] for s in held_dirs}

    every = train_files + [x for files in extra.values() for x in files]
    results = _probe_all([p for p, _ in every])
    good: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for (path, _), r in zip(every, results, strict=True):
        if isinstance(r, Exception):
            skipped.append((path, f"{type(r).__name__}: {r}"))
        else:
            good[path] = r
    if skipped:
        shown = "\n  ".join(f"{p} ({why})" for p, why in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(f"{root}: skipped {len(skipped)} file(s) that are not readable images:"
                      f"\n  {shown}{more}", DataWarning, stacklevel=3)

    def keep(files: list[tuple[str, int]]) -> list[Sample]:
        return [(p, c) for p, c in files if p in good]

    train = keep(train_files)
    if not train:
        raise DataError(f"{train_dir}: no readable images in {len(class_names)} class folder(s) "
                        f"({len(train_files)} files, {len(skipped)} unreadable)")
    counts = torch.bincount(torch.tensor([c for _, c in train]), minlength=len(class_names))
    empty = [class_names[c] for c in range(len(class_names)) if counts[c] == 0]
    if empty:
        raise DataError(f"{train_dir}: class folder(s) {empty} hold no readable images; add images or remove "
                        "the folder")
    if len(class_names) < 2:
        raise DataError(f"{train_dir}: only one class ({class_names[0]!r}); a classifier needs at least two "
                        "class folders")
    val = keep(extra["val"]) if "val" in extra else None
    test = keep(extra["test"]) if "test" in extra else None
    for name, files in (("val", val), ("test", test)):
        if files is not None and not files:
            raise DataError(f"{root / name}: no readable images; remove the folder or add images")
    if test is None:  # val/ alone is the held-out split; a training validation split is carved instead
        val, test = None, val
    gray = all(is_gray_mode(good[p]) for p in good)
    return FolderIndex(root, class_names, train, val, test, gray, skipped)


def estimate_stats(dataset: ImageFolderDataset,
                   n: int = STATS_SAMPLE) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std from a fixed sample of up to `n` images (seed 0: the same for every run)."""
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(dataset), generator=gen)[:n].tolist()
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        images = list(pool.map(lambda i: dataset[i][0], pick))
    return channel_stats(torch.stack(images))

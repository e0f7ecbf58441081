"""Batches from a split: worker processes decode, the main process never touches the global RNG."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from vitkit.data.bundle import ArraySplit


class EpochSampler(Sampler[int]):
    """Indices of one epoch: a permutation that is a pure function of (seed, epoch), or 0..n-1.

    Each `iter()` serves the next epoch. To resume, call `set_epoch(epoch, skip)` first: the next
    iteration serves that epoch's order from position `skip` on (skip = batches done * batch size).
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed = n, shuffle, int(seed)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # private: global RNG untouched
        return torch.randperm(self.n, generator=gen)

    def __iter__(self) -> Iterator[int]:
        order, skip = self.order(self.epoch), self.skip
        self.epoch, self.skip = self.epoch + 1, 0
        return iter(order[skip:].tolist())

    def __len__(self) -> int:
        return self.n


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def make_loader(split: ArraySplit | Dataset, batch_size: int, *, shuffle: bool, seed: int,
                num_workers: int | None = None, drop_last: bool = False) -> DataLoader:
    """A DataLoader of (uint8 (B, C, H, W), int64 (B,)) batches.

    Meant for streamed (Dataset) splits; an ArraySplit works too, in the main process. The order
    depends only on `seed` and the epoch (see `EpochSampler`, reachable as `loader.sampler`), so
    iterating never consumes the global torch RNG that the augmentation draws from.
    """
    if isinstance(split, ArraySplit):
        dataset: Dataset = TensorDataset(split.images, split.labels)
        num_workers = 0
    else:
        dataset = split
        num_workers = default_workers() if num_workers is None else num_workers
    workers = num_workers > 0
    return DataLoader(
        dataset, batch_size=batch_size,
        sampler=EpochSampler(len(dataset), shuffle=shuffle, seed=seed),  # type: ignore[arg-type]
        num_workers=num_workers, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
        persistent_workers=workers, prefetch_factor=4 if workers else None,
        # The iterator draws a base seed for its workers; from this generator, not the global RNG.
        generator=torch.Generator().manual_seed(int(seed)))

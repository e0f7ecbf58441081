"""Augment a whole epoch ahead: the per-image augmentation of every training image of the epoch,
computed in a few large chunks when the epoch starts, for in-memory datasets on the GPU.

Why: a TrivialAugment batch is ~260 small kernels. At batch 128 they cost more host time than the
model's whole (CUDA-graphed) step, so a small model's training loop is bound by kernel launches.
Augmenting 8,192 images per launch instead of 128 makes that cost ~1/64th; each step then only
slices its rows out of the epoch's tensor. Mixup/cutmix and label smoothing stay per step (they act
on the batch).

Randomness: epoch e of rank r is augmented from generators seeded by (seed, e, r), inside
`fork_rng`, so it is a pure function of those three numbers and the global RNG stream (dropout,
drop-path, mixing) is untouched: a resumed run re-creates the epoch it stopped in exactly.
"""

from __future__ import annotations

import torch

from vitkit.augment import BatchAugment
from vitkit.train.batches import BatchPlan

AHEAD_CHUNK = 8192  # images per augmentation call: large enough to amortise launches, small in memory


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch) * 1_009 + rank + 7_919  # distinct from BatchPlan's permutation seeds


class EpochAugmentation:
    """This rank's micro-batches of augmented images, one epoch at a time.

    Rows are stored in the order the steps consume them (`BatchPlan.epoch_rows`), so a micro-batch
    is a contiguous slice (a view, no gather per step).
    """

    def __init__(self, augment: BatchAugment, images: torch.Tensor, labels: torch.Tensor, plan: BatchPlan,
                 seed: int, chunk: int = AHEAD_CHUNK) -> None:
        self.augment, self.images, self.labels, self.plan, self.seed = augment, images, labels, plan, seed
        self.chunk = chunk
        self.epoch: int | None = None
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def prepare(self, epoch: int) -> None:
        device = self.images.device
        idx = self.plan.epoch_rows(epoch, device)
        images = self.images[idx]
        forked = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            s = epoch_seed(self.seed, epoch, self.plan.rank)
            torch.default_generator.manual_seed(s)
            if device.type == "cuda":
                torch.cuda.default_generators[forked[0]].manual_seed(s)
            self.x = torch.cat([self.augment.image_ops(part) for part in images.split(self.chunk)])
        self.y = self.labels[idx]
        self.epoch = epoch

    def micro_batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(augmented images, labels) for each of this rank's micro-batches of optimiser step `step`."""
        epoch, where = self.plan.slices(step)
        if epoch != self.epoch:
            self.prepare(epoch)
        assert self.x is not None and self.y is not None
        return [(self.x[s], self.y[s]) for s in where]

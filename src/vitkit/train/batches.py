"""The order in which examples are seen: a pure function of (seed, epoch, step), so a resumed run
sees exactly the batches the uninterrupted run would have seen, on any number of processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class BatchPlan:
    """Global batch G per optimiser step = accum micro-batches x world processes x M examples.

    Epoch e uses one permutation drawn from a generator seeded by (seed, e); step k of the epoch
    takes the k-th slice of G examples; within it, micro-batch m of rank r is a contiguous slice
    of M. The tail that does not fill a whole step is dropped.
    """

    def __init__(self, num_examples: int, global_batch: int, accum_steps: int, world: int, rank: int,
                 seed: int) -> None:
        if global_batch % (accum_steps * world):
            raise ValueError(f"batch_size {global_batch} must divide evenly over {accum_steps} "
                             f"accumulation steps x {world} processes")
        self.n, self.global_batch, self.accum, self.world, self.rank = num_examples, global_batch, accum_steps, world, rank
        self.micro = global_batch // (accum_steps * world)
        self.seed = seed
        self.steps_per_epoch = num_examples // global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {global_batch} is larger than the {num_examples} training examples")
        # per-epoch caches: the permutation, and this rank's rows of it (on a device)
        self._cached_epoch: int | None = None
        self._cached_perm = torch.empty(0, dtype=torch.long)
        self._rows_key: tuple[int, torch.device | None] | None = None
        self._rows = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cached_epoch != epoch:  # one draw per epoch, not per step
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cached_perm, self._cached_epoch = torch.randperm(self.n, generator=g), epoch
        return self._cached_perm

    def epoch_rows(self, epoch: int, device: torch.device | None = None) -> torch.Tensor:
        """This rank's example indices for the epoch in the order its steps consume them (see
        `slices`), on `device` if given. Cached per epoch: a host-to-device copy per step would
        synchronise the host with the GPU every step (pageable memory), stalling the queue."""
        if self._rows_key != (epoch, device):
            used = self.steps_per_epoch * self.global_batch
            grid = self.permutation(epoch)[:used].view(self.steps_per_epoch, self.accum, self.world, self.micro)
            rows = grid[:, :, self.rank].reshape(-1)
            self._rows, self._rows_key = (rows if device is None else rows.to(device)), (epoch, device)
        return self._rows

    def slices(self, step: int) -> tuple[int, list[slice]]:
        """(epoch, where each of this rank's micro-batches of global step `step` lies in `epoch_rows`)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        starts = ((k * self.accum + m) * self.micro for m in range(self.accum))
        return epoch, [slice(start, start + self.micro) for start in starts]

    def micro_batches(self, step: int, device: torch.device | None = None) -> list[torch.Tensor]:
        """This rank's index tensors for global optimiser step `step` (0-based, across epochs), on
        `device` if given."""
        epoch, where = self.slices(step)
        rows = self.epoch_rows(epoch, device)
        return [rows[s] for s in where]

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch


class PlanSampler(torch.utils.data.Sampler):
    """Batch sampler for a streamed dataset: yields this rank's micro-batches from `start_step` on."""

    def __init__(self, plan: BatchPlan, start_step: int, total_steps: int) -> None:
        self.plan, self.start, self.total = plan, start_step, total_steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            for idx in self.plan.micro_batches(step):
                yield idx.tolist()

    def __len__(self) -> int:
        return (self.total - self.start) * self.plan.accum

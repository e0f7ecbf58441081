"""Seeded, stratified splits: a pure function of (labels, fraction, seed)."""

from __future__ import annotations

import math

import torch

# The seed of every fixed test split (digits, image folders without val/ or test/): it never follows
# the run seed, so runs with different seeds are scored on the same images.
TEST_SEED = 0
TEST_FRACTION = 0.2


def held_counts(class_sizes: list[int], fraction: float) -> list[int]:
    """How many of each class to hold out: round(fraction * N) in total, shared in proportion.

    Largest-remainder allocation: each class gets its share rounded up or down, and the total is
    exact unless a class is too small (every class keeps at least one example on the kept side).
    """
    total = round(fraction * sum(class_sizes))
    quotas = [fraction * n for n in class_sizes]
    counts = [min(math.floor(q), max(n - 1, 0)) for q, n in zip(quotas, class_sizes, strict=True)]
    order = sorted(range(len(quotas)), key=lambda c: (-(quotas[c] - math.floor(quotas[c])), c))
    for c in order:
        if sum(counts) >= total:
            break
        if counts[c] < class_sizes[c] - 1 and counts[c] < math.ceil(quotas[c]):
            counts[c] += 1
    return counts


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held) index tensors, each sorted, partitioning range(len(labels)).

    `held` has about `fraction` of every class; which ones is decided by `seed` alone (a private
    generator: the global torch RNG is neither used nor advanced).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    labels = labels.to(torch.int64).cpu()
    if labels.numel() == 0:
        return labels.clone(), labels.clone()
    classes = torch.unique(labels)  # sorted
    members = [torch.nonzero(labels == c).squeeze(1) for c in classes]
    counts = held_counts([m.numel() for m in members], fraction)
    gen = torch.Generator().manual_seed(int(seed))
    held = []
    for m, k in zip(members, counts, strict=True):
        perm = torch.randperm(m.numel(), generator=gen)
        held.append(m[perm[:k]])
    held_idx = torch.sort(torch.cat(held)).values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).squeeze(1), held_idx


def nested_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a class-balanced subset holding about `fraction` of every class.

    Nested: each class is shuffled once (in class order, from one generator seeded by `seed`)
    and a subset takes the first max(1, round(fraction * n_c)) of its class's order, so for one
    seed and one split the subset at a smaller
    fraction is always inside the subset at a larger one, and every class keeps its share of
    the split. A private generator is used; the global torch RNG is neither used nor advanced.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"subset fraction must be in (0, 1], got {fraction}")
    labels = labels.to(torch.int64).cpu()
    gen = torch.Generator().manual_seed(int(seed))
    kept = []
    for c in torch.unique(labels):  # sorted: the shuffles do not depend on the fraction
        members = torch.nonzero(labels == c).squeeze(1)
        order = members[torch.randperm(members.numel(), generator=gen)]
        kept.append(order[:max(1, round(fraction * members.numel()))])
    return torch.sort(torch.cat(kept)).values

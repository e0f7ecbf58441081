"""scikit-learn's bundled handwritten digits: 1,797 8x8 grayscale images, 10 classes, no network."""

from __future__ import annotations

import numpy as np
import torch

from vitkit.data.bundle import ArraySplit
from vitkit.data.splits import TEST_FRACTION, TEST_SEED, stratified_split

CLASS_NAMES = [str(d) for d in range(10)]


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N, 1, 8, 8) and int64 labels.

    The source has 17 levels, 0..16; they map to 0..255 by rounding v * 255 / 16.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    levels = np.asarray(d.images, dtype=np.int64)  # (N, 8, 8) in 0..16
    images = torch.from_numpy((levels * 255 + 8) // 16).to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return images, labels


def load_digits_splits() -> tuple[ArraySplit, ArraySplit]:
    """(train, test): the test split is a fixed stratified 20% (seed 0), whatever the run seed."""
    images, labels = digits_arrays()
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, TEST_SEED)
    return ArraySplit(images[train_idx], labels[train_idx]), ArraySplit(images[test_idx], labels[test_idx])

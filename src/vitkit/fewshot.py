"""Few-shot linear evaluation (paper section 4.1): a closed-form ridge fit on frozen features.

For each shot count n and seed: draw n training images per class, take the model's frozen
representation (the final-norm class token, or the mean of the patch tokens for GAP models),
standardise it with the sample's statistics, and solve an L2-regularised least-squares problem
onto {-1, 1}^K targets in closed form. The regularisation strength is chosen from a grid on a
held-out part of the training split (the data's validation split); accuracy is measured on the
test split. Results are the mean and spread over seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

L2_GRID = tuple(2.0**k for k in range(-10, 11))  # 2^-10 .. 2^10; features are standardised first


# ---- the solver (pure functions on arrays) -------------------------------------------------
def pm1_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) class ids -> (N, K) targets: +1 for the class, -1 elsewhere."""
    y = -np.ones((len(labels), num_classes))
    y[np.arange(len(labels)), labels] = 1.0
    return y


def fit_ridge(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float) -> np.ndarray:
    """Closed-form L2-regularised least squares with an unregularised bias.

    Minimises ||X W + 1 b - Y||^2 + l2 ||W||^2 over W (D, K) and b (K,), with Y in {-1, 1}^(N x K).
    Returns the (D + 1, K) matrix [W; b], so scores are `[X, 1] @ result`. The bias is solved by
    centring (b = mean(Y) - mean(X) W); W from the primal normal equations when N >= D, else from
    the dual W = Xc^T (Xc Xc^T + l2 I)^-1 Yc, which is the same solution for l2 > 0. float64 throughout.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    x = np.asarray(features, dtype=np.float64)  # (N, D)
    y = pm1_targets(np.asarray(labels), num_classes)  # (N, K)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    if n >= d:
        w = np.linalg.solve(xc.T @ xc + l2 * np.eye(d), xc.T @ yc)  # (D, K)
    else:
        w = xc.T @ np.linalg.solve(xc @ xc.T + l2 * np.eye(n), yc)  # (D, N) @ (N, K)
    b = y_mean - x_mean @ w  # (K,)
    return np.vstack([w, b[None]])


def predict_ridge(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    """(N, D) features -> (N,) predicted class ids under `fit_ridge` weights."""
    x = np.asarray(features, dtype=np.float64)
    return (x @ weights[:-1] + weights[-1]).argmax(axis=1)


def standardizer(features: np.ndarray, eps: float = 1e-6):
    """A function that standardises features with these features' per-dimension mean and std."""
    mean = features.mean(axis=0)
    std = features.std(axis=0) + eps
    return lambda f: (f - mean) / std


def choose_l2(train_x: np.ndarray, train_y: np.ndarray, held_x: np.ndarray, held_y: np.ndarray,
              num_classes: int, grid: Sequence[float] = L2_GRID) -> tuple[float, float]:
    """The grid value with the best held-out accuracy (the larger on ties: simpler fits); returns
    (l2, held-out accuracy)."""
    best = (-1.0, 0.0)
    for l2 in sorted(grid):
        acc = float((predict_ridge(fit_ridge(train_x, train_y, num_classes, l2), held_x) == held_y).mean())
        if acc >= best[0]:
            best = (acc, l2)
    return best[1], best[0]


def sample_shots(labels: np.ndarray, shots: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of `shots` examples of every class, drawn without replacement by `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(num_classes):
        pool = np.flatnonzero(labels == k)
        if len(pool) < shots:
            raise ValueError(f"class {k} has {len(pool)} training images, fewer than {shots} shots; "
                             f"use at most {min(int((labels == c).sum()) for c in range(num_classes))} shots")
        out.append(rng.choice(pool, size=shots, replace=False))
    return np.concatenate(out)


# ---- features --------------------------------------------------------------------------------
@torch.no_grad()
def extract_features(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], preprocess
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Frozen representations: `model.pool` of the final-norm tokens (class token, or mean of the
    patch tokens for GAP models), before any pre-logits layer or head. Returns (N, D) and (N,)."""
    model.eval()
    feats, labels = [], []
    for images, y in batches:
        feats.append(model.pool(model.forward_features(preprocess(images))).float().cpu())
        labels.append(y.cpu())
    return torch.cat(feats).double().numpy(), torch.cat(labels).numpy()


def split_features(model, split, indices: np.ndarray | None, mean, std, batch_size: int = 256,
                   num_workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Features of a data split (or of the items at `indices`), preprocessed as the model expects."""
    from vitkit.augment import preprocess_eval
    from vitkit.evaluate import split_batches

    if indices is not None:  # both kinds of split (in memory, image folder) have `subset`
        split = split.subset(torch.as_tensor(indices, dtype=torch.long))
    device = next(model.parameters()).device
    size = model.config.img_size
    return extract_features(model, split_batches(split, batch_size, device, num_workers),
                            lambda u8: preprocess_eval(u8, size, mean, std))


# ---- the evaluation --------------------------------------------------------------------------
@dataclass
class ShotResult:
    shots: int
    accuracies: list[float]  # test accuracy per seed
    l2: list[float]  # chosen regularisation per seed
    held_out: list[float]  # held-out accuracy at the chosen l2, per seed

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "accuracies": self.accuracies, "l2": self.l2,
                "held_out": self.held_out}


@dataclass
class FewShotResult:
    shots: dict[int, ShotResult]
    feature_dim: int
    n_test: int
    n_held_out: int
    seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"shots": {str(n): r.to_dict() for n, r in self.shots.items()}, "feature_dim": self.feature_dim,
                "n_test": self.n_test, "n_held_out": self.n_held_out, "seeds": self.seeds}


def fewshot_eval(model, data, shots: Sequence[int] = (1, 5, 10, 25), seeds: Sequence[int] = (0, 1, 2),
                 l2_grid: Sequence[float] = L2_GRID, batch_size: int = 256, num_workers: int = 4,
                 log=None) -> FewShotResult:
    """The paper's few-shot linear evaluation of `model` on a `vitkit.data.DataBundle`.

    The n-shot samples come from `data.train`, the regularisation is chosen on `data.val` (a
    held-out part of the training split), accuracy is measured on `data.test`. Only the images in
    some sample are run through the model, so large training splits cost little.
    """
    from vitkit.evaluate import input_stats

    if data.val is None:
        raise ValueError("few-shot evaluation needs a held-out part of the training split to choose the "
                         "regularisation; load the data with val_fraction > 0")
    if any(n < 1 for n in shots):
        raise ValueError(f"shots must be positive, got {list(shots)}")
    mean, std = input_stats(model.config, data.mean, data.std)
    k = data.num_classes
    train_labels = data.train.labels.numpy()
    samples = {(n, s): sample_shots(train_labels, n, k, s) for n in shots for s in seeds}
    needed = np.unique(np.concatenate(list(samples.values())))
    say = log or (lambda msg: None)
    say(f"features of {len(needed)} training, {len(data.val)} held-out and {len(data.test)} test images")
    train_x, _ = split_features(model, data.train, needed, mean, std, batch_size, num_workers)
    row = {int(i): r for r, i in enumerate(needed)}  # training index -> row of train_x
    held_x, held_y = split_features(model, data.val, None, mean, std, batch_size, num_workers)
    test_x, test_y = split_features(model, data.test, None, mean, std, batch_size, num_workers)
    results: dict[int, ShotResult] = {}
    for n in shots:
        res = ShotResult(n, [], [], [])
        for s in seeds:
            idx = samples[(n, s)]
            x, y = train_x[[row[int(i)] for i in idx]], train_labels[idx]
            norm = standardizer(x)
            l2, held_acc = choose_l2(norm(x), y, norm(held_x), held_y, k, l2_grid)
            w = fit_ridge(norm(x), y, k, l2)
            res.accuracies.append(float((predict_ridge(w, norm(test_x)) == test_y).mean()))
            res.l2.append(l2)
            res.held_out.append(held_acc)
        results[n] = res
        say(f"{n}-shot: {100 * res.mean:.2f}% +- {100 * res.std:.2f}")
    return FewShotResult(results, train_x.shape[1], len(test_y), len(held_y), list(seeds))

"""Few-shot linear evaluation: the closed-form ridge solver against a direct least-squares solution,
the held-out choice of its strength, the n-shot sampling."""

import numpy as np
import pytest

from vitkit.fewshot import (L2_GRID, choose_l2, fit_ridge, pm1_targets, predict_ridge, sample_shots,
                            standardizer)


def lstsq_reference(x, labels, k, l2):
    """Solve the augmented system [X 1; sqrt(l2) I 0] [W; b] = [Y; 0] by plain least squares."""
    n, d = x.shape
    a = np.block([[x, np.ones((n, 1))], [np.sqrt(l2) * np.eye(d), np.zeros((d, 1))]])
    b = np.vstack([pm1_targets(labels, k), np.zeros((d, k))])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("n,d", [(60, 12), (15, 40)], ids=["primal N>D", "dual N<D"])
@pytest.mark.parametrize("l2", [1e-3, 0.7, 50.0])
def test_ridge_solver_matches_least_squares_on_the_augmented_system(n, d, l2):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d) + rng.normal(size=d)  # uneven scales, off-centre
    labels = rng.integers(0, 4, size=n)
    ours = fit_ridge(x, labels, 4, l2)
    ref = lstsq_reference(x, labels, 4, l2)
    assert ours.shape == (d + 1, 4)
    assert np.allclose(ours, ref, atol=1e-8, rtol=1e-6), np.abs(ours - ref).max()


def test_targets_are_plus_minus_one_and_the_bias_is_unregularised():
    assert pm1_targets(np.array([2, 0]), 3).tolist() == [[-1, -1, 1], [1, -1, -1]]
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(30, 5)), np.repeat([0, 1, 2], [5, 10, 15])
    w = fit_ridge(x, labels, 3, 1e9)  # all weights shrink to 0; the bias keeps the class balance
    assert np.abs(w[:-1]).max() < 1e-6
    assert np.allclose(w[-1], [2 * 5 / 30 - 1, 2 * 10 / 30 - 1, 2 * 15 / 30 - 1], atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        fit_ridge(x, labels, 3, 0.0)


def test_separable_features_are_classified_perfectly():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 16)) * 4
    labels = np.repeat(np.arange(5), 20)
    x = centres[labels] + rng.normal(size=(100, 16)) * 0.3
    norm = standardizer(x)
    w = fit_ridge(norm(x), labels, 5, 1.0)
    test_labels = np.repeat(np.arange(5), 10)
    test_x = centres[test_labels] + rng.normal(size=(50, 16)) * 0.3
    assert (predict_ridge(w, norm(test_x)) == test_labels).all()


def nuisance_problem(n, rng):
    """Feature 0 = signal + a large nuisance that feature 1 measures: only a nearly unregularised
    fit can subtract it."""
    y = np.repeat([0, 1], n)
    z = rng.normal(size=2 * n) * 5
    x = np.stack([np.where(y == 1, 1.0, -1.0) + z + 0.1 * rng.normal(size=2 * n), z + 0.1 * rng.normal(size=2 * n)], 1)
    return x, y


def critical_problem(n, rng, d=20):
    """As many features as examples: the interpolating fit is wild, a strong penalty generalises."""
    y = np.repeat([0, 1], n)
    x = rng.normal(size=(2 * n, d))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    return x, y


@pytest.mark.parametrize("seed", [0, 1])
def test_held_out_choice_of_l2_follows_the_problem(seed):
    rng = np.random.default_rng(seed)
    x, y = nuisance_problem(10, rng)
    hx, hy = nuisance_problem(200, rng)
    l2, acc = choose_l2(x, y, hx, hy, 2)
    strongest = (predict_ridge(fit_ridge(x, y, 2, max(L2_GRID)), hx) == hy).mean()
    assert acc == 1.0 and strongest < 0.7 and l2 < max(L2_GRID)

    x, y = critical_problem(10, rng)
    hx, hy = critical_problem(200, rng)
    l2, acc = choose_l2(x, y, hx, hy, 2)
    weakest = (predict_ridge(fit_ridge(x, y, 2, min(L2_GRID)), hx) == hy).mean()
    assert l2 >= 8 and acc > weakest + 0.1


def test_n_shot_samples_have_n_per_class_and_depend_on_the_seed():
    labels = np.repeat(np.arange(3), [7, 9, 12])
    a, b = sample_shots(labels, 5, 3, seed=0), sample_shots(labels, 5, 3, seed=1)
    assert len(a) == 15 and len(set(a.tolist())) == 15
    assert np.bincount(labels[a]).tolist() == [5, 5, 5]
    assert sorted(a.tolist()) != sorted(b.tolist())
    assert np.array_equal(a, sample_shots(labels, 5, 3, seed=0))
    with pytest.raises(ValueError, match="class 0 has 7 training images.*at most 7 shots"):
        sample_shots(labels, 8, 3, seed=0)

"""Starting partitions of the mixture (actors/gmm_init.py) against scikit-learn's k-means; no Ray."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from actors import gmm_init


def _blobs(seed: int, k: int = 5, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=12.0, size=(k, 3))
    y = rng.integers(0, k, size=n)
    return centres[y] + rng.normal(size=(n, 3)), y


def _inertia(x: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((x[labels == c] - x[labels == c].mean(axis=0)) ** 2).sum() for c in np.unique(labels)))


def test_kmeans_plus_plus_best_of_five_starts_equals_scikit_learn() -> None:
    for seed in range(4):
        x, y = _blobs(seed)
        starts = [gmm_init.kmeans_plus_plus(x, 5, np.random.default_rng(100 * seed + r)) for r in range(5)]
        ours = min(starts, key=lambda labels: _inertia(x, labels))
        theirs = KMeans(5, n_init=10, random_state=seed).fit_predict(x)
        assert adjusted_rand_score(ours, theirs) == 1.0
        assert _inertia(x, ours) == pytest.approx(_inertia(x, theirs), rel=1e-9)
        np.testing.assert_array_equal(starts[0], gmm_init.kmeans_plus_plus(x, 5, np.random.default_rng(100 * seed)))


def test_split_in_two_separates_two_groups_and_is_seeded() -> None:
    x, y = _blobs(3, k=2)
    side = gmm_init.split_in_two(x, np.random.default_rng(0), n_iter=20)
    assert set(np.unique(side)) == {0, 1} and adjusted_rand_score(side, y) == 1.0
    np.testing.assert_array_equal(side, gmm_init.split_in_two(x, np.random.default_rng(0), n_iter=20))

"""Splits along the slowest direction and the two-Gaussian chain that scores them (actors/slow_moves.py); no Ray."""

from __future__ import annotations

import numpy as np

from actors import sequence_proposals, slow_moves
from actors.scoring import accuracy


def test_slow_split_follows_what_consecutive_points_share() -> None:
    # Two classes in runs of 8 (or alternating point by point), each point with a style offset larger than the
    # class gap that changes point to point: 2-means on the points splits by style, the slow direction by class.
    rng = np.random.default_rng(3)
    for cls in (np.repeat(rng.integers(0, 2, size=50), 8), np.arange(400) % 2):
        style = rng.choice([-3.0, 3.0], size=cls.size)
        x = np.stack([1.5 * cls + 0.3 * rng.normal(size=cls.size), style + 0.3 * rng.normal(size=cls.size)], axis=1)
        member = np.ones(cls.size, dtype=bool)
        side, corr = slow_moves.slow_split(x, member)
        assert accuracy(side.astype(np.int64), cls) > 0.95 and abs(corr) > 0.5
        plain = sequence_proposals.two_means(x, np.random.default_rng(0))[0]
        assert accuracy(plain.astype(np.int64), cls) < 0.6
    # too few consecutive pairs of members (every other point): no split
    assert slow_moves.slow_split(x, np.arange(400) % 2 == 0) is None


def test_two_means_1d_is_the_least_scatter_threshold() -> None:
    p = np.random.default_rng(2).normal(size=40)
    side = slow_moves.two_means_1d(p)
    best = min(sequence_proposals.within_scatter(p[:, None], (p > t).astype(np.int64), 2) for t in np.sort(p)[:-1])
    assert sequence_proposals.within_scatter(p[:, None], side.astype(np.int64), 2) == best
    assert p[side].min() > p[~side].max()

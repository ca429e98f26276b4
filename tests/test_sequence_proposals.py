"""Proposals of structural moves under a sequence (actors/sequence_proposals.py); no Ray."""

from __future__ import annotations

import numpy as np

from actors import sequence_proposals
from actors.scoring import accuracy


def test_neighbour_context_stops_at_sequence_ends() -> None:
    probs = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    pred, succ = sequence_proposals.neighbour_context(probs, lengths=np.array([2, 4]))
    uniform = np.full(3, 1.0 / 3.0)
    for t in range(6):
        # sequences are points 0-1 and 2-5: a first point's predecessor and a last point's successor are uniform,
        # never the other sequence's point
        np.testing.assert_array_equal(pred[t], uniform if t in (0, 2) else probs[t - 1])
        np.testing.assert_array_equal(succ[t], uniform if t in (1, 5) else probs[t + 1])


def test_two_means_separates_two_groups() -> None:
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(0.0, 0.1, size=(30, 3)), rng.normal(1.0, 0.1, size=(20, 3))])
    side, scatter = sequence_proposals.two_means(f, rng)
    assert len(set(side[:30])) == 1 and len(set(side[30:])) == 1 and side[0] != side[-1]
    assert scatter < sequence_proposals.within_scatter(f, np.zeros(50, dtype=np.int64), 1) / 10


def test_stretch_means_pool_each_run_of_the_pair() -> None:
    x = np.arange(8, dtype=float)[:, None]
    member = np.array([1, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    got = sequence_proposals.stretch_means(x, member, lengths=np.array([4, 4]))
    # stretches: {0, 1}, {3} (its sequence ends), {4, 5}, {7}
    np.testing.assert_allclose(got[:, 0], [0.5, 0.5, 3.0, 4.5, 4.5, 7.0])


def test_stretch_proposal_splits_runs_by_class_not_by_style() -> None:
    # Runs of 8 of class 0 or 1, each followed by 2 points of class 2. Points of classes 0 and 1 carry a large
    # "style" offset that changes point to point; clusters 0 and 1 split them by style. Stretch means find the classes.
    rng = np.random.default_rng(6)
    cls = np.concatenate([np.r_[np.full(8, c), 2, 2] for c in rng.integers(0, 2, size=60)])
    style = rng.choice([-2.5, 2.5], size=cls.size)
    x = np.stack([3.0 * cls + 0.3 * rng.normal(size=cls.size), style + 0.3 * rng.normal(size=cls.size)], axis=1)
    x[cls == 2] = [10.0, 0.0]
    by_style = np.where(cls == 2, 2, (style > 0).astype(np.int64))
    trans = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.5, 0.5, 0.0]]) + 1e-3
    (move,) = sequence_proposals.stretch_proposals(x, by_style, trans, np.random.default_rng(0), 1)
    assert move.name.startswith("repartition 0,1")
    assert accuracy(move.labels, cls) > 0.95 and accuracy(by_style, cls) < 0.8

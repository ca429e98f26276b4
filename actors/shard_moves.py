"""Merge-and-split moves of the sharded mixture, scored by the marginal likelihood reduced over shards.

The same move as :mod:`actors.mixture_moves` (clusters i and j merge, cluster
s splits in two, one half taking the freed number j), kept when it raises the
partition's exact log marginal likelihood log p(X, z) by ``mixture_min_gain``
nats, but made without gathering a single point:

* log p(X, z) factorises over classes, and each class's term depends on its
  points only through their count, sum and scatter: the shards' exact int64
  statistics (:meth:`actors.gmm_shards.GMMShard.class_stats`, about one common
  reference so that two classes' statistics add) give every class's term and,
  added pairwise, every merge's;
* every class is split by 2-means run on the shards (Lloyd steps: each shard
  sends per (class, side) counts and sums, :meth:`GMMShard.split_stats`), from
  the two points one standard deviation either side of the class mean along its
  principal axis (no random draw), so a split's two halves and their terms are
  exact too;
* the best move by its exact gain (the separable gain of its merge and split,
  plus the change of the weights' Dirichlet term) is applied on every shard
  (:meth:`GMMShard.apply_move`), and the search repeats up to ``mixture_moves``
  times.

Everything a shard computes is row-wise or per fixed block and everything the
coordinator sees is reduced exactly, so the moves, like the sweeps, are the
same bytes for any number of shards.  Unlike the unsharded search there is no
classification-EM polish of the candidates (it would need one pass over the
points per candidate and step); the Gibbs sweeps that follow do that work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from actors import gmm_core
from actors.mixture_moves import class_log_marginal, weights_log_marginal
from actors.shard_core import Shards, fixed_sum, from_fixed
from actors.shard_stats import posterior_from_stats

log = logging.getLogger(__name__)

#: Most Lloyd steps of a sharded split.
SPLIT_ITERATIONS = 10
#: Smallest half of a split (as actors.mixture_moves).
MIN_SIZE = 4


def _reduce(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(fixed_sum([p[i] for p in parts]) for i in range(len(parts[0])))


def _log_marginals(
    prior: gmm_core.NIWPrior, stats: tuple[np.ndarray, ...], reference: np.ndarray, e1: int, e2: int
) -> tuple[np.ndarray, gmm_core.ClassPosterior]:
    post = posterior_from_stats(prior, stats, reference, e1, e2)
    return class_log_marginal(post, prior), post


def _start_centres(
    post: gmm_core.ClassPosterior, stats: tuple[np.ndarray, ...], reference: np.ndarray, e1: int, e2: int
):
    """Per class, mean -/+ one standard deviation along its principal axis: (K, 2, d)."""
    counts = stats[0].astype(np.float64)
    s1, s2 = from_fixed(stats[1], e1), from_fixed(stats[2], e2)
    safe = np.maximum(counts, 1.0)
    mean = reference + s1 / safe[:, None]
    cov = (s2 - np.einsum("kd,ke->kde", s1, s1) / safe[:, None, None]) / safe[:, None, None]
    vals, vecs = np.linalg.eigh(0.5 * (cov + np.transpose(cov, (0, 2, 1))))
    axis = vecs[:, :, -1] * np.sqrt(np.maximum(vals[:, -1], 0.0))[:, None]
    return np.stack([mean - axis, mean + axis], axis=1)


def candidates(
    shards: Shards,
    prior: gmm_core.NIWPrior,
    n_classes: int,
    concentration: float,
    exponents: Callable[[np.ndarray], tuple[int, int]],
) -> tuple[list[tuple[float, int, int, int]], np.ndarray]:
    """Every merge-and-split move of the shards' labels with its exact gain, best first, and the split centres.

    Parameters
    ----------
    shards : Shards of :class:`actors.gmm_shards.GMMShard`, with labels
    prior : gmm_core.NIWPrior
    n_classes : int
    concentration : float
        Symmetric Dirichlet concentration on the weights.
    exponents : callable
        ``exponents(reference (m, d)) -> (e1, e2)``: fixed-point grids for statistics about ``reference``.

    Returns
    -------
    moves : list of (gain, i, j, s)
        Merge j into i, split s (its points nearer ``centres[s, 1]`` take j), by the gain of log p(X, z).
    centres : numpy.ndarray, shape (K, 2, d)
    """
    k = n_classes
    d = prior.mean.shape[0]
    ref = np.broadcast_to(prior.mean, (k, d)).copy()  # one reference for all classes: their statistics add
    e1, e2 = exponents(ref)
    stats = _reduce(shards.map("class_stats", ref, e1, e2))
    own, post = _log_marginals(prior, stats, ref, e1, e2)
    counts = stats[0]
    # splits: Lloyd steps of 2-means inside every class at once
    centres = _start_centres(post, stats, ref, e1, e2)
    for _ in range(SPLIT_ITERATIONS):
        c1, c2 = exponents(centres.reshape(2 * k, d))
        split = _reduce(shards.map("split_stats", centres, c1, c2))
        n2 = split[0].reshape(k, 2).astype(np.float64)
        moved = centres + from_fixed(split[1], c1).reshape(k, 2, d) / np.maximum(n2, 1.0)[:, :, None]
        new = np.where(n2[:, :, None] > 0, moved, centres)
        if np.array_equal(new, centres):
            break
        centres = new
    c1, c2 = exponents(centres.reshape(2 * k, d))
    split = _reduce(shards.map("split_stats", centres, c1, c2))  # the halves apply_move will make
    halves, _ = _log_marginals(prior, split, centres.reshape(2 * k, d), c1, c2)
    sizes = split[0].reshape(k, 2)
    split_gain = halves.reshape(k, 2).sum(axis=1) - own
    can_split = sizes.min(axis=1) >= MIN_SIZE
    # merges: every pair's statistics added exactly
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    pi, pj = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    merged = tuple(s[pi] + s[pj] for s in stats)
    merge_lm, _ = _log_marginals(prior, merged, ref[pi], e1, e2)
    merge_gain = merge_lm - own[pi] - own[pj]
    base_w = weights_log_marginal(counts.astype(np.float64), concentration)
    found: list[tuple[float, int, int, int]] = []
    for p, (i, j) in enumerate(pairs):
        for s in np.flatnonzero(can_split):
            if s in (i, j):
                continue
            new_counts = counts.astype(np.float64).copy()
            new_counts[i] = counts[i] + counts[j]
            new_counts[s], new_counts[j] = sizes[s, 0], sizes[s, 1]
            gain = float(merge_gain[p] + split_gain[s]) + weights_log_marginal(new_counts, concentration) - base_w
            found.append((gain, i, j, int(s)))
    found.sort(key=lambda c: -c[0])
    return found, centres


def search(
    shards: Shards,
    prior: gmm_core.NIWPrior,
    n_classes: int,
    max_moves: int,
    min_gain: float,
    concentration: float,
    exponents: Callable[[np.ndarray], tuple[int, int]],
) -> list[str]:
    """Greedy merge-and-split moves on the shards' labels; the moves taken, with their gains.

    Parameters
    ----------
    shards : Shards of :class:`actors.gmm_shards.GMMShard`, with labels
    prior : gmm_core.NIWPrior
    n_classes : int
    max_moves : int
    min_gain : float
        Least gain of log p(X, z) in nats for a move to be taken.
    concentration : float
        Symmetric Dirichlet concentration on the weights.
    exponents : callable
        ``exponents(reference (m, d)) -> (e1, e2)``: fixed-point grids for statistics about ``reference``.
    """
    taken: list[str] = []
    if n_classes < 3 or max_moves < 1:
        return taken
    for _ in range(max_moves):
        found, centres = candidates(shards, prior, n_classes, concentration, exponents)
        if not found or found[0][0] < min_gain:
            break
        gain, i, j, s = found[0]
        shards.map("apply_move", i, j, s, centres[s])
        taken.append(f"merge {i},{j} + split {s} (+{gain:.1f} nats)")
        log.debug("sharded move: %s", taken[-1])
    return taken


def split_side(xb: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Whether each point is nearer its class's second centre than its first (row-wise, any block shape).

    Parameters
    ----------
    xb : numpy.ndarray, shape (n, d)
    labels : numpy.ndarray, shape (n,)
    centres : numpy.ndarray, shape (K, 2, d)

    Returns
    -------
    numpy.ndarray, shape (n,), bool
    """
    c = centres[labels]
    return ((xb - c[:, 1]) ** 2).sum(axis=1) < ((xb - c[:, 0]) ** 2).sum(axis=1)


__all__: list[Any] = ["candidates", "search", "split_side"]

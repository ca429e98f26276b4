"""Ray-free proposals of structural moves for a mixture whose points form a sequence.

Each point's *context* (the class posteriors of its predecessor and successor,
:func:`neighbour_context`) and the latents averaged over stretches of a pair of
clusters (:func:`stretch_means`) propose re-partitions of clusters; the
mixture's own merge-and-split moves compete with them
(:func:`mixture_proposals`).  :mod:`actors.sequence_core` scores the proposals
by a hidden Markov chain fit and takes the best; see its docstring for the
kinds of move.

Every function takes its random generator explicitly; nothing uses global RNG.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from actors import gmm_core, mixture_moves, mm_core


def neighbour_context(probs: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class posteriors of each point's predecessor and successor.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, K)
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths (one sequence when omitted).

    Returns
    -------
    pred, succ : numpy.ndarray, shape (N, K)
        Row t holds ``probs[t - 1]`` and ``probs[t + 1]``; a sequence's first
        point's predecessor and its last point's successor are uniform.
    """
    k = probs.shape[1]
    uniform = np.full((1, k), 1.0 / k)
    pred, succ = np.vstack([uniform, probs[:-1]]), np.vstack([probs[1:], uniform])
    if lengths is not None:
        start = mm_core.sequence_starts(lengths, probs.shape[0])
        pred[start] = uniform
        succ[np.roll(start, -1)] = uniform  # the point before each start ends a sequence
    return pred, succ


def within_scatter(f: np.ndarray, groups: np.ndarray, n_groups: int) -> float:
    """Sum of squared distances of the rows of ``f`` (n, D) to their group's mean."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    member = np.zeros((n_groups, f.shape[0]))
    member[groups, np.arange(f.shape[0])] = 1.0
    sums = member @ f
    return float((f * f).sum() - ((sums * sums).sum(axis=1) / np.maximum(counts, 1.0)).sum())


def two_means(f: np.ndarray, rng: np.random.Generator, n_iter: int = 15) -> tuple[np.ndarray, float]:
    """Split the rows of ``f`` (n, D) in two by Lloyd's algorithm from a far-apart pair.

    Returns
    -------
    side : numpy.ndarray, shape (n,), bool
        Which of the two groups each row joins.
    scatter : float
        Within-group scatter of the split.
    """
    side = gmm_core.split_in_two(f, rng, n_iter)
    return side, within_scatter(f, side.astype(np.int64), 2)


@dataclasses.dataclass(frozen=True)
class Move:
    """One proposed relabelling.

    Attributes
    ----------
    name : str
        What the move does, e.g. ``"merge 3,7 + split 2 by pred"``.
    labels : numpy.ndarray, shape (N,)
        The labels after the move.
    score : float
        Context scatter the move explains (used only to rank proposals).
    """

    name: str
    labels: np.ndarray
    score: float


def propose_moves(
    labels: np.ndarray,
    probs: np.ndarray,
    rng: np.random.Generator,
    n_best: int = 3,
    min_size: int = 4,
    lengths: np.ndarray | None = None,
) -> list[Move]:
    """The ``n_best`` repartitions and ``n_best`` merge-and-splits that explain most context.

    Parameters
    ----------
    labels : numpy.ndarray, shape (N,), int in [0, K)
    probs : numpy.ndarray, shape (N, K)
        Class posteriors of every point (their neighbours' rows are the context).
    rng : numpy.random.Generator
    n_best : int
        Candidates of each kind returned.
    min_size : int
        Smallest group of points that is split.
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: no context across a boundary.

    Returns
    -------
    list of Move, repartitions first, each kind best first.
    """
    k = probs.shape[1]
    pred, succ = neighbour_context(probs, lengths)
    members = [np.flatnonzero(labels == j) for j in range(k)]
    reparts: list[tuple[float, str, int, int, np.ndarray, np.ndarray]] = []
    merges: list[tuple[float, str, int, int, int, np.ndarray]] = []
    for view, f in (("pred", pred), ("succ", succ), ("both", np.hstack([pred, succ]))):
        own = [within_scatter(f[m], np.zeros(len(m), dtype=np.int64), 1) for m in members]
        splits: dict[int, tuple[np.ndarray, float]] = {}
        for j in range(k):
            if len(members[j]) >= min_size:
                side, scatter = two_means(f[members[j]], rng)
                splits[j] = (side, own[j] - scatter)
        for i in range(k):
            for j in range(i + 1, k):
                union = np.concatenate([members[i], members[j]])
                if len(union) < min_size:
                    continue
                side, scatter = two_means(f[union], rng)
                reparts.append((own[i] + own[j] - scatter, view, i, j, union, side))
                cost = within_scatter(f[union], np.zeros(len(union), dtype=np.int64), 1) - own[i] - own[j]
                for s, (s_side, gain) in splits.items():
                    if s not in (i, j) and len(members[j]):
                        merges.append((gain - cost, view, i, j, s, s_side))
    moves = []
    for score, view, i, j, union, side in sorted(reparts, key=lambda c: -c[0])[:n_best]:
        new = labels.copy()
        # Keep the numbers: the half agreeing most with cluster i stays i.
        agree = np.count_nonzero(~side & (labels[union] == i)) + np.count_nonzero(side & (labels[union] == j))
        new[union] = np.where(side, j, i) if 2 * agree >= len(union) else np.where(side, i, j)
        moves.append(Move(f"repartition {i},{j} by {view}", new, float(score)))
    for score, view, i, j, s, side in sorted(merges, key=lambda c: -c[0])[:n_best]:
        new = labels.copy()
        new[members[j]] = i
        new[members[s][side]] = j
        moves.append(Move(f"merge {i},{j} + split {s} by {view}", new, float(score)))
    return moves


def stretch_means(x: np.ndarray, member: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Each member point's latent averaged over its stretch: the run of consecutive members it lies in.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    member : numpy.ndarray, shape (N,), bool
    lengths : numpy.ndarray, shape (S,), optional
        Sequence lengths: no stretch crosses a boundary.

    Returns
    -------
    numpy.ndarray, shape (M, d), one row per member point, in order.
    """
    start = member & ~np.concatenate(([False], member[:-1]))
    if lengths is not None:
        start |= member & mm_core.sequence_starts(lengths, member.shape[0])
    run = np.cumsum(start)[member] - 1
    sums = np.zeros((int(run.max()) + 1 if run.size else 0, x.shape[1]))
    np.add.at(sums, run, x[member])
    return (sums / np.bincount(run)[:, None])[run]


def stretch_proposals(
    x: np.ndarray,
    labels: np.ndarray,
    transitions: np.ndarray,
    rng: np.random.Generator,
    n_best: int,
    lengths: np.ndarray | None = None,
    min_size: int = 4,
) -> list[Move]:
    """Repartitions of the ``n_best`` pairs of clusters with most mutual transitions, by stretch means.

    Two similar classes that run for several points each (frames of a video) can be
    split by the mixture along the wrong axis: two clusters that each hold both
    classes, the points of one run spread over the two.  Such a pair passes to
    each other often (transitions i -> j and j -> i).  Within a run the class
    stays while everything else about a point (a digit's style) changes, so
    the points of the pair are split in two by 2-means on their latents
    averaged over each stretch of consecutive points of the pair (one class's
    run, mostly), not on the latents themselves.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,)
    transitions : numpy.ndarray, shape (K, K)
        The chain's current transitions; pairs are ranked by T_ij T_ji.
    rng : numpy.random.Generator
    n_best : int
    lengths : numpy.ndarray, shape (S,), optional
    min_size : int
        Smallest pair of clusters split.

    Returns
    -------
    list of Move
    """
    k = transitions.shape[0]
    mutual = transitions * transitions.T
    i_up, j_up = np.triu_indices(k, 1)
    moves = []
    for c in np.argsort(-mutual[i_up, j_up], kind="stable")[:n_best]:
        i, j = int(i_up[c]), int(j_up[c])
        member = (labels == i) | (labels == j)
        if member.sum() < min_size:
            continue
        side = gmm_core.split_in_two(stretch_means(x, member, lengths), rng, n_iter=20)
        rows = np.flatnonzero(member)
        new = labels.copy()
        agree = np.count_nonzero(~side & (labels[rows] == i)) + np.count_nonzero(side & (labels[rows] == j))
        new[rows] = np.where(side, j, i) if 2 * agree >= len(rows) else np.where(side, i, j)
        moves.append(Move(f"repartition {i},{j} by stretch means", new, float(mutual[i, j])))
    return moves


def mixture_proposals(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    rng: np.random.Generator,
    n_best: int,
    lengths: np.ndarray | None = None,
) -> list[Move]:
    """The ``n_best`` merge-and-split moves of :func:`actors.mixture_moves.candidates` as :class:`Move` s.

    ``lengths`` is accepted for symmetry with the other proposals; the
    splits are by 2-means on the latents and do not depend on the order.
    (Splitting on run means, each point's latent averaged over its run of one
    cluster, was measured: +0.003 and +0.012 on runs of one digit, but -0.10
    on independent draws over PCA latents, so it is not used.)
    """
    moves = []
    for score, i, j, s, side in mixture_moves.candidates(x, labels, n_classes, prior, rng, n_best, min_size=4):
        new = labels.copy()
        new[labels == j] = i
        rows_s = np.flatnonzero(labels == s)
        new[rows_s[side]] = j
        moves.append(Move(f"merge {i},{j} + split {s} by latents", new, float(score)))
    return moves

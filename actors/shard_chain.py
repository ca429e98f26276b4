"""What one GMM shard computes for the sequence-guided moves: pure functions of one block's points.

The sharded search (:mod:`actors.shard_sequence`) treats every fixed-size block
of ``block`` points as its own sequence (cut again where a sequence of the
data's ``lengths`` begins inside it): a block's chain never looks at the
points of another block, so each block's numbers are the same bytes on any
shard, and a shard needs nothing from its neighbours.  Everything here runs on
the arrays of one block and reuses the unsharded pure functions
(:func:`actors.mm_core.forward_backward`, :func:`actors.mm_core.expected_counts`,
:func:`actors.sequence_proposals.neighbour_context`,
:func:`actors.gmm_core.gaussian_log_likelihood`); the results are rounded per
block onto the fixed-point grids of :mod:`actors.shard_core` (or, for
log-likelihoods, summed exactly as integers) before they leave the shard.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from actors import gmm_core, mm_core
from actors.sequence_proposals import neighbour_context
from actors.shard_core import to_fixed

#: Scale that makes every finite float64 an integer (the smallest subnormal is 2**-1074).
_EXACT = 2**1074


def exact(value: float) -> int:
    """``value`` times 2**1074 as an exact Python int (a float64's exact sum is then integer addition)."""
    return int(Fraction(float(value)) * _EXACT)


def from_exact(total: int) -> float:
    """The float64 nearest the exact sum ``total`` / 2**1074 (correctly rounded)."""
    return total / _EXACT


def block_lengths(starts: np.ndarray) -> np.ndarray:
    """Lengths of the sequences inside one block, the block's first point always beginning one.

    Parameters
    ----------
    starts : numpy.ndarray, shape (n,), bool
        Which of the block's points begin a sequence of the data.

    Returns
    -------
    numpy.ndarray, shape (S_b,), int64, summing to n.
    """
    first = np.flatnonzero(starts)
    if not first.size or first[0] != 0:
        first = np.concatenate(([0], first))
    return np.diff(np.concatenate((first, [starts.shape[0]]))).astype(np.int64)


def soft_stats(
    x: np.ndarray, w: np.ndarray, centre: np.ndarray, e0: int, e1: int, e2: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft counts, sums and second moments of one block's points about ``centre``, on fixed-point grids.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
    w : numpy.ndarray, shape (n, K)
        Memberships.
    centre : numpy.ndarray, shape (d,)
    e0, e1, e2 : int
        Grids 2**-e of the counts, sums and second moments.

    Returns
    -------
    counts (K,), sums (K, d), second (K, d, d), int64
    """
    c = x - centre
    k, d = w.shape[1], x.shape[1]
    second = np.empty((k, d, d))
    for j in range(k):
        second[j] = (c * w[:, j, None]).T @ c
    return to_fixed(w.sum(axis=0), e0), to_fixed(w.T @ c, e1), to_fixed(second, e2)


def first_sums(w: np.ndarray, lengths: np.ndarray, e0: int) -> np.ndarray:
    """One block's memberships summed over its sequences' first points (K,), fixed-point."""
    return to_fixed(w[mm_core.sequence_starts(lengths, w.shape[0])].sum(axis=0), e0)


def start_counts(w: np.ndarray, lengths: np.ndarray, e0: int) -> tuple[np.ndarray, np.ndarray]:
    """One block's expected transition counts (K, K) of independent memberships and :func:`first_sums`."""
    return to_fixed(mm_core.expected_counts(w, lengths), e0), first_sums(w, lengths, e0)


def block_chain(
    x: np.ndarray,
    lengths: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    trans: np.ndarray,
    initial: np.ndarray,
    emission_weight: float,
    forward_only: bool,
) -> mm_core.ForwardBackward | float:
    """One E-step of the chain on one block: forward-backward (or only its log-likelihood) of its sequences.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
    lengths : numpy.ndarray, shape (S_b,)
        :func:`block_lengths` of the block.
    means, prec_chol : numpy.ndarray, shapes (K, d) and (K, d, d)
        The emissions' Gaussians.
    trans : numpy.ndarray, shape (K, K)
    initial : numpy.ndarray, shape (K,)
    emission_weight : float
        Power of the emissions (as :func:`actors.sequence_core.chain_fit`).
    forward_only : bool
        Only the log-likelihood (:func:`actors.mm_core.forward_log_likelihood`).
    """
    log_em = gmm_core.gaussian_log_likelihood(x, means, prec_chol)
    if emission_weight != 1.0:
        log_em = emission_weight * log_em
    if forward_only:
        return mm_core.forward_log_likelihood(log_em, trans, initial, lengths=lengths)
    return mm_core.forward_backward(log_em, trans, initial, lengths=lengths)


#: The context views of :func:`actors.sequence_proposals.propose_moves`.
VIEWS = ("pred", "succ", "both")


def context(post: np.ndarray, lengths: np.ndarray, view: str) -> np.ndarray:
    """One block's context features: the posteriors of each point's predecessor, successor or both, (n, K or 2K)."""
    pred, succ = neighbour_context(post, lengths)
    return {"pred": pred, "succ": succ, "both": np.hstack([pred, succ])}[view]


def pair_table(k: int) -> np.ndarray:
    """(K, K) int: group number of the pair {a, b} (a != b), K + its rank among i < j; -1 on the diagonal."""
    table = np.full((k, k), -1, dtype=np.int64)
    i, j = np.triu_indices(k, 1)
    table[i, j] = table[j, i] = k + np.arange(i.shape[0])
    return table


def memberships(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (point, group) membership: a point of class a is in group a and in every pair {a, b}.

    Returns
    -------
    rows : numpy.ndarray, shape (n K,), the point of each membership
    groups : numpy.ndarray, shape (n K,), its group in [0, K + K (K - 1) / 2)
    """
    n = labels.shape[0]
    table = pair_table(k)
    others = np.array([[b for b in range(k) if b != a] for a in range(k)], dtype=np.int64).reshape(k, k - 1)
    pairs = table[labels[:, None], others[labels]]  # (n, K - 1)
    rows = np.repeat(np.arange(n), k)
    groups = np.concatenate([labels[:, None], pairs], axis=1).reshape(-1)
    return rows, groups


def group_moments(
    f: np.ndarray, labels: np.ndarray, k: int, e0: int, e1: int, e2: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts (G,), sums (G, D) and second moments (G, D, D) of one block's features per group, fixed-point.

    The groups are the K classes and the K (K - 1) / 2 pairs of classes (:func:`memberships`).
    """
    rows, groups = memberships(labels, k)
    m = k + k * (k - 1) // 2
    fr = f[rows]
    counts = np.bincount(groups, minlength=m)
    order = np.argsort(groups, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(counts)))
    fo = fr[order]
    sums, second = np.zeros((m, f.shape[1])), np.zeros((m, f.shape[1], f.shape[1]))
    for g in np.flatnonzero(counts):  # one BLAS call on each group's rows of the block
        rows_g = fo[bounds[g] : bounds[g + 1]]
        sums[g] = rows_g.sum(axis=0)
        second[g] = rows_g.T @ rows_g
    return to_fixed(counts.astype(np.float64), e0), to_fixed(sums, e1), to_fixed(second, e2)


def nearer_second(f: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Whether each row of ``f`` (n, D) is nearer ``centres[:, 1]`` than ``centres[:, 0]`` (centres (n, 2, D))."""
    return ((f - centres[:, 1]) ** 2).sum(axis=1) < ((f - centres[:, 0]) ** 2).sum(axis=1)


def group_split_stats(
    f: np.ndarray, labels: np.ndarray, k: int, centres: np.ndarray, e0: int, e1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, side) statistics of one block's features split at ``centres`` (G, 2, D), fixed-point.

    Returns
    -------
    counts : (G, 2), sums : (G, 2, D), squares : (G, 2) (sum of |f|**2),
    high : (G, 2) points of the pair's higher class (the lower's are counts - high)
    """
    rows, groups = memberships(labels, k)
    m = centres.shape[0]
    # nearer centres[g, 1] than centres[g, 0]  <=>  f . (c0 - c1) < (|c0|^2 - |c1|^2) / 2: one (n, D) x (D, G)
    # product for every group at once instead of two distances per membership
    w = centres[:, 0] - centres[:, 1]
    bound = 0.5 * ((centres[:, 0] ** 2).sum(axis=1) - (centres[:, 1] ** 2).sum(axis=1))
    side = ((f @ w.T)[rows, groups] < bound[groups]).astype(np.int64)
    cell = 2 * groups + side
    counts = np.bincount(cell, minlength=2 * m).astype(np.float64)
    # per-cell sums by bincount (a one-hot product would touch 2 G cells per membership)
    sums = np.stack([np.bincount(cell, weights=col[rows], minlength=2 * m) for col in f.T], axis=1)
    squares = np.bincount(cell, weights=(f * f).sum(axis=1)[rows], minlength=2 * m)
    table = pair_table(k)
    pair_high = np.zeros(m, dtype=np.int64)
    low, up = np.triu_indices(k, 1)
    pair_high[table[low, up]] = up
    high = np.bincount(cell, weights=(labels[rows] == pair_high[groups]).astype(np.float64), minlength=2 * m)
    return (
        to_fixed(counts.reshape(m, 2), e0),
        to_fixed(sums.reshape(m, 2, -1), e1),
        to_fixed(squares.reshape(m, 2), e1),
        to_fixed(high.reshape(m, 2), e0),
    )

"""Labelled data ordered by a random Markov chain over its classes.

The tutorial orders its images 0,1,...,9,0,... : a deterministic cycle, which a
Markov model learns trivially.  A random chain is a harder and more honest test:
each class has a few likely successors with unequal weights, and the model must
recover that matrix from the images alone.

:func:`random_transitions` draws such a matrix, :func:`sample_chain` draws a
class sequence from it, :func:`chain_sequence` orders labelled images along a
sampled sequence, and :func:`empirical_transitions` gives the transition matrix
of a sampled sequence (the best any learner can do from that one sequence).
Every function takes its ``numpy.random.Generator`` explicitly.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from messages.errors import DataError

log = logging.getLogger(__name__)


def _sinkhorn(m: np.ndarray, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Scale the rows and columns of a non-negative matrix with total support to sum to one."""
    for _ in range(max_iter):
        m = m / m.sum(axis=1, keepdims=True)
        cols = m.sum(axis=0)
        if np.abs(cols - 1.0).max() < tol:
            break
        m = m / cols[None, :]
    return m / m.sum(axis=1, keepdims=True)


def random_transitions(
    n_classes: int,
    rng: np.random.Generator,
    n_successors: int = 3,
    concentration: float = 1.0,
    floor: float = 0.02,
) -> np.ndarray:
    """A sparse-ish, doubly stochastic random transition matrix.

    Each row's likely successors are the images of the row under
    ``n_successors`` random permutations (so 1 to ``n_successors`` distinct
    successors, usually ``n_successors`` or one fewer); their weights are drawn
    from a symmetric Dirichlet(``concentration``), the matrix is then scaled by
    Sinkhorn's algorithm to be doubly stochastic (the support, a union of
    permutations, allows it), and mixed with ``floor`` of the uniform matrix so
    that every transition is possible.

    Doubly stochastic means the stationary distribution is uniform: every class
    is visited about equally often, so images drawn for a sequence as long as
    the data set rarely run out in any class (see :func:`chain_sequence`), and
    the mixture model faces balanced classes as in the tutorial.

    Parameters
    ----------
    n_classes : int
        K.
    rng : numpy.random.Generator
    n_successors : int
        Random permutations whose union is the support of the likely successors.
    concentration : float
        Dirichlet concentration of each row's weights over its successors
        (below 1: one successor tends to dominate; 1: uniform over the simplex).
    floor : float
        Mass spread uniformly over all K classes, in [0, 1).

    Returns
    -------
    numpy.ndarray, shape (K, K)
        Rows and columns sum to one; every entry is at least floor / K.
    """
    if n_classes < 1 or n_successors < 1 or concentration <= 0 or not 0 <= floor < 1:
        raise ValueError(
            f"need n_classes >= 1, n_successors >= 1, concentration > 0 and floor in [0, 1), got {n_classes}, "
            f"{n_successors}, {concentration}, {floor}"
        )
    k = n_classes
    support = np.zeros((k, k), dtype=bool)
    for _ in range(n_successors):
        support[np.arange(k), rng.permutation(k)] = True
    m = np.zeros((k, k))
    for i in range(k):
        succ = np.flatnonzero(support[i])
        m[i, succ] = rng.dirichlet(np.full(len(succ), concentration))
    # Sinkhorn converges on a union of permutations, but slowly when a Dirichlet weight is
    # tiny; 1e-6 more on every supported entry keeps it to a few hundred iterations.
    m = _sinkhorn(np.where(support, m + 1e-6, 0.0))
    return (1.0 - floor) * m + floor / k


def stationary_distribution(trans: np.ndarray) -> np.ndarray:
    """The stationary distribution pi = pi T of an irreducible chain.

    Parameters
    ----------
    trans : numpy.ndarray, shape (K, K), row-stochastic

    Returns
    -------
    numpy.ndarray, shape (K,)
    """
    k = trans.shape[0]
    # pi (T - I) = 0 with sum(pi) = 1, as one least-squares system.
    a = np.vstack([(trans - np.eye(k)).T, np.ones((1, k))])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def _check_transitions(trans: np.ndarray, k: int | None = None) -> np.ndarray:
    trans = np.asarray(trans, dtype=float)
    if trans.ndim != 2 or trans.shape[0] != trans.shape[1] or (k is not None and trans.shape[0] != k):
        want = "(K, K)" if k is None else f"({k}, {k})"
        raise DataError(f"transitions should have shape {want}, got {trans.shape}")
    if not np.all(np.isfinite(trans)) or trans.min() < 0 or not np.allclose(trans.sum(axis=1), 1.0):
        raise DataError("transitions should be finite, non-negative, with rows summing to one")
    return trans


def sample_chain(
    trans: np.ndarray, n_points: int, rng: np.random.Generator, initial: np.ndarray | None = None
) -> np.ndarray:
    """A class sequence drawn from a Markov chain.

    Parameters
    ----------
    trans : numpy.ndarray, shape (K, K)
        Row-stochastic transition matrix.
    n_points : int
        N, the sequence length.
    rng : numpy.random.Generator
    initial : numpy.ndarray, shape (K,), optional
        Distribution of the first class; the chain's stationary distribution
        when omitted.

    Returns
    -------
    numpy.ndarray, shape (N,), int64 in [0, K)
    """
    trans = _check_transitions(trans)
    k = trans.shape[0]
    p0 = stationary_distribution(trans) if initial is None else np.asarray(initial, dtype=float)
    cdf = np.cumsum(trans, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(n_points)
    out = np.empty(n_points, dtype=np.int64)
    if n_points == 0:
        return out
    out[0] = min(int(np.searchsorted(np.cumsum(p0), u[0], side="right")), k - 1)
    for t in range(1, n_points):  # inherently sequential; N searchsorted calls take milliseconds
        out[t] = np.searchsorted(cdf[out[t - 1]], u[t], side="right")
    return out


def empirical_transitions(states: np.ndarray, n_classes: int, lengths: np.ndarray | None = None) -> np.ndarray:
    """Row-normalised counts of consecutive pairs of a class sequence.

    Parameters
    ----------
    states : numpy.ndarray, shape (N,), int in [0, K)
    n_classes : int
        K.
    lengths : numpy.ndarray, shape (S,), optional
        Lengths of consecutive sequences (summing to N); no pair across a
        boundary is counted.  One sequence when omitted.

    Returns
    -------
    numpy.ndarray, shape (K, K)
        Row j is the observed distribution of the class following class j;
        a class never followed by another gets a uniform row.
    """
    states = np.asarray(states, dtype=np.int64)
    pairs = states[:-1] * n_classes + states[1:]
    if lengths is not None:
        within = np.ones(len(pairs), dtype=bool)
        within[np.cumsum(lengths)[:-1] - 1] = False  # the pair (last of one, first of the next)
        pairs = pairs[within]
    counts = np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), 1.0 / n_classes)


@dataclasses.dataclass(frozen=True)
class ChainSequence:
    """Labelled data ordered by a Markov chain over its classes.

    Attributes
    ----------
    data : numpy.ndarray, shape (N, D)
        The points in sequence order.
    labels : numpy.ndarray, shape (N,)
        Their labels (values of the source labels).
    indices : numpy.ndarray, shape (N,), int64
        Row of the source data each point was taken from.
    classes : numpy.ndarray, shape (K,)
        The label values; row/column j of ``transitions`` is ``classes[j]``.
    transitions : numpy.ndarray, shape (K, K)
        The true transition matrix the sequence was drawn from.
    n_reused : int
        Points that repeat an earlier point of their class, because the class
        ran out of distinct points (0 when every point is distinct).
    lengths : numpy.ndarray, shape (S,), int64, optional
        Lengths of the consecutive sequences the points form (summing to N);
        None for one sequence.
    """

    data: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    classes: np.ndarray
    transitions: np.ndarray
    n_reused: int
    lengths: np.ndarray | None = None

    @property
    def states(self) -> np.ndarray:
        """Class index in [0, K) of every point, shape (N,)."""
        return np.searchsorted(self.classes, self.labels)

    @classmethod
    def of_rows(
        cls,
        data: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        classes: np.ndarray,
        transitions: np.ndarray,
        n_reused: int = 0,
        lengths: np.ndarray | None = None,
    ) -> ChainSequence:
        """The sequence of source rows ``indices`` (N,) of ``data`` (M, D) and ``labels`` (M,), in that order."""
        return cls(data[indices], labels[indices], indices, classes, transitions, n_reused, lengths)

    def empirical_transitions(self) -> np.ndarray:
        """Transition matrix of the sampled sequence, shape (K, K): the best achievable target."""
        return empirical_transitions(self.states, len(self.classes), self.lengths)


def chain_sequence(
    data: np.ndarray,
    labels: np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    transitions: np.ndarray | None = None,
    **random_options: float,
) -> ChainSequence:
    """Order labelled points along a class sequence drawn from a Markov chain.

    The class sequence is drawn with :func:`sample_chain` (first class from the
    stationary distribution).  Points are then drawn *without* replacement
    within each class, in a random order, as long as the class has points left;
    once a class runs out, its further occurrences are drawn *with*
    replacement from all its points (counted in ``n_reused``, and logged).

    Parameters
    ----------
    data : numpy.ndarray, shape (M, D)
        Source points, e.g. images.
    labels : numpy.ndarray, shape (M,)
        Their classes; the K distinct values, sorted, are the chain's states.
    n_points : int
        N, the sequence length.
    rng : numpy.random.Generator
    transitions : numpy.ndarray, shape (K, K), optional
        The chain; drawn with :func:`random_transitions` (``random_options``
        passed on) when omitted.
    **random_options
        ``n_successors``, ``concentration``, ``floor`` of :func:`random_transitions`.

    Returns
    -------
    ChainSequence
    """
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.shape[0] != labels.shape[0]:
        raise DataError(f"labels should have one entry per point ({data.shape[0]}), got {labels.shape[0]}")
    if n_points < 1:
        raise DataError(f"n_points should be at least 1, got {n_points}")
    classes, inverse = np.unique(labels, return_inverse=True)
    k = len(classes)
    trans = random_transitions(k, rng, **random_options) if transitions is None else _check_transitions(transitions, k)  # type: ignore[arg-type]
    states = sample_chain(trans, n_points, rng)
    indices, n_reused = draw_points(inverse, states, rng)
    return ChainSequence.of_rows(data, labels, indices, classes, trans, n_reused)


def draw_points(inverse: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Pick a source point of the right class for every position of a class sequence.

    Points are drawn *without* replacement within each class, in a random
    order, as long as the class has points left; once a class runs out, its
    further occurrences are drawn *with* replacement from all its points (and
    logged).

    Parameters
    ----------
    inverse : numpy.ndarray, shape (M,), int in [0, K)
        Class index of every source point.
    states : numpy.ndarray, shape (N,), int in [0, K)
        The class sequence.
    rng : numpy.random.Generator

    Returns
    -------
    indices : numpy.ndarray, shape (N,), int64
        Source row of every position.
    n_reused : int
        Positions that repeat an earlier point of their class.
    """
    k = int(inverse.max()) + 1
    indices = np.empty(len(states), dtype=np.int64)
    n_reused = 0
    for c in range(k):
        where = np.flatnonzero(states == c)
        members = rng.permutation(np.flatnonzero(inverse == c))
        if len(where) and not len(members):
            raise DataError(f"the class sequence visits class {c}, which has no points")
        fresh = min(len(where), len(members))
        indices[where[:fresh]] = members[:fresh]
        extra = len(where) - fresh
        if extra:
            indices[where[fresh:]] = members[rng.integers(0, len(members), size=extra)]
            n_reused += extra
    if n_reused:
        log.info(
            "chain sequence: %d of %d points reuse a point of their class (the class ran out)", n_reused, len(states)
        )
    return indices, n_reused

"""Orders of labelled data with every kind of sequence structure (and none).

The tutorial orders its images 0,1,...,9,0,... : a point's position alone gives
its class.  The data people bring are different: frames of a video stay in one
state for a while, a recording follows a routine with slips, some data have no
order at all, and many short episodes each start somewhere.  Each function here
reorders (selects and permutes) labelled points into one of these kinds and
returns a :class:`orchestrator.sequences.ChainSequence` whose ``transitions``
are the reference the learned transitions are scored against:

* :func:`self_transition_sequence`: a chain that stays in its class with
  probability ``stay`` and otherwise moves to another class uniformly (runs of
  one class);
* :func:`noisy_cycle_sequence`: the cycle 0,1,...,K-1,0,... with a fraction of
  the positions shuffled among themselves (the reference is the sequence's own
  label transitions);
* :func:`independent_sequence`: a random permutation (no structure; the
  reference rows are the class frequencies);
* :func:`short_sequences`: many short sequences, each from a random start
  state, following a chain (the cycle by default), with their ``lengths``;
* :func:`kind_sequence`: any of these (and the random chain of
  :func:`orchestrator.sequences.chain_sequence`) by name.

Every function takes its ``numpy.random.Generator`` explicitly.
"""

from __future__ import annotations

import numpy as np

from messages.errors import DataError
from orchestrator.sequences import (
    ChainSequence,
    _check_transitions,
    chain_sequence,
    draw_points,
    empirical_transitions,
    sample_chain,
)

KINDS = ("random-chain", "self-transitions", "noisy-cycle", "independent", "short-cycles")
"""Names :func:`kind_sequence` accepts; every kind but ``independent`` has structure."""


def _classes(data: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data, labels = np.asarray(data), np.asarray(labels)
    if data.shape[0] != labels.shape[0]:
        raise DataError(f"labels should have one entry per point ({data.shape[0]}), got {labels.shape[0]}")
    classes, inverse = np.unique(labels, return_inverse=True)
    return data, labels, classes, inverse


def self_transition_matrix(n_classes: int, stay: float) -> np.ndarray:
    """Stay with probability ``stay``, else move to one of the other classes uniformly.

    Returns
    -------
    numpy.ndarray, shape (K, K), doubly stochastic (uniform stationary law).
    """
    if n_classes < 2 or not 0 <= stay < 1:
        raise ValueError(f"need n_classes >= 2 and stay in [0, 1), got {n_classes}, {stay}")
    off = (1.0 - stay) / (n_classes - 1)
    return np.full((n_classes, n_classes), off) + (stay - off) * np.eye(n_classes)


def cycle_matrix(n_classes: int) -> np.ndarray:
    """The deterministic cycle j -> j + 1 (mod K), shape (K, K)."""
    return np.roll(np.eye(n_classes), 1, axis=1)


def self_transition_sequence(
    data: np.ndarray, labels: np.ndarray, n_points: int, rng: np.random.Generator, stay: float = 0.6
) -> ChainSequence:
    """Points ordered along a chain with self-transitions (runs of one class, mean length 1 / (1 - stay)).

    Parameters
    ----------
    data : numpy.ndarray, shape (M, D)
    labels : numpy.ndarray, shape (M,)
    n_points : int
        N.
    rng : numpy.random.Generator
    stay : float
        Probability of staying in the same class, in [0, 1).

    Returns
    -------
    ChainSequence
    """
    k = len(np.unique(np.asarray(labels)))
    return chain_sequence(data, labels, n_points, rng, transitions=self_transition_matrix(k, stay))


def noisy_cycle_sequence(
    data: np.ndarray, labels: np.ndarray, rng: np.random.Generator, fraction: float = 0.2
) -> ChainSequence:
    """The cycle over the classes (as the tutorial's order) with a fraction of positions shuffled.

    Every point is used once: position t first gets a point of class t mod K
    (drawn without replacement; a class short of points reuses some), then
    ``round(fraction * N)`` positions chosen at random are permuted among
    themselves, so each of them holds a point of a random class.  The reference
    ``transitions`` are the sequence's own label transitions.

    Parameters
    ----------
    data : numpy.ndarray, shape (N, D)
    labels : numpy.ndarray, shape (N,)
    rng : numpy.random.Generator
    fraction : float
        Share of positions shuffled, in [0, 1].

    Returns
    -------
    ChainSequence
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction should be in [0, 1], got {fraction}")
    data, labels, classes, inverse = _classes(data, labels)
    n, k = len(labels), len(classes)
    states = np.arange(n) % k
    indices, n_reused = draw_points(inverse, states, rng)
    noisy = rng.choice(n, size=int(round(fraction * n)), replace=False)
    indices[noisy] = indices[rng.permutation(noisy)]
    states = inverse[indices]
    return ChainSequence.of_rows(data, labels, indices, classes, empirical_transitions(states, k), n_reused)


def independent_sequence(data: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> ChainSequence:
    """The points in a random order: no sequence structure.

    The reference ``transitions`` have every row equal to the class
    frequencies (what a chain of independent draws has).

    Returns
    -------
    ChainSequence
    """
    data, labels, classes, inverse = _classes(data, labels)
    indices = rng.permutation(len(labels))
    freq = np.bincount(inverse, minlength=len(classes)) / len(labels)
    return ChainSequence.of_rows(data, labels, indices, classes, np.tile(freq, (len(classes), 1)))


def short_sequences(
    data: np.ndarray,
    labels: np.ndarray,
    n_sequences: int,
    length: int,
    rng: np.random.Generator,
    transitions: np.ndarray | None = None,
) -> ChainSequence:
    """Many short sequences, each from a uniformly random start state, following one chain.

    Parameters
    ----------
    data : numpy.ndarray, shape (M, D)
    labels : numpy.ndarray, shape (M,)
    n_sequences : int
        S.
    length : int
        Points per sequence (N = S * length).
    rng : numpy.random.Generator
    transitions : numpy.ndarray, shape (K, K), optional
        The chain; the cycle (:func:`cycle_matrix`) when omitted.

    Returns
    -------
    ChainSequence
        With ``lengths`` (S,), all equal to ``length``.
    """
    if n_sequences < 1 or length < 1:
        raise DataError(f"n_sequences and length should be at least 1, got {n_sequences} and {length}")
    data, labels, classes, inverse = _classes(data, labels)
    k = len(classes)
    trans = cycle_matrix(k) if transitions is None else _check_transitions(transitions, k)
    starts = np.full(k, 1.0 / k)
    states = np.concatenate([sample_chain(trans, length, rng, initial=starts) for _ in range(n_sequences)])
    indices, n_reused = draw_points(inverse, states, rng)
    return ChainSequence.of_rows(
        data, labels, indices, classes, trans, n_reused, lengths=np.full(n_sequences, length, dtype=np.int64)
    )


def kind_sequence(kind: str, data: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> ChainSequence:
    """One order of every point of ``data`` (N points) of the named kind, with the settings the bench uses.

    ``random-chain``: :func:`orchestrator.sequences.chain_sequence`;
    ``self-transitions``: stay 0.6; ``noisy-cycle``: 20 % of positions
    shuffled; ``independent``: a permutation; ``short-cycles``: sequences of
    10 points following the cycle from random starts (N // 10 of them).
    """
    n = len(labels)
    if kind == "random-chain":
        return chain_sequence(data, labels, n, rng)
    if kind == "self-transitions":
        return self_transition_sequence(data, labels, n, rng)
    if kind == "noisy-cycle":
        return noisy_cycle_sequence(data, labels, rng)
    if kind == "independent":
        return independent_sequence(data, labels, rng)
    if kind == "short-cycles":
        return short_sequences(data, labels, n // 10, 10, rng)
    raise DataError(f"chain kind should be one of {KINDS}, got {kind!r}")

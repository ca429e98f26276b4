"""Accuracy and transition distance under the best one-to-one matching of clusters to labels."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def confusion(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts (n_clusters, n_labels) of points per (cluster, label); ids must be >= 0."""
    n_c = int(classes.max()) + 1
    n_l = int(labels.max()) + 1
    out = np.zeros((n_c, n_l), dtype=np.int64)
    np.add.at(out, (classes, labels), 1)
    return out


def best_matching(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Hungarian matching: rows (cluster, label) of the assignment maximising agreement.

    Returns
    -------
    numpy.ndarray, shape (M, 2), int
    """
    _, lab = np.unique(labels, return_inverse=True)
    cm = confusion(np.asarray(classes), lab)
    rows, cols = linear_sum_assignment(-cm)
    uniq = np.unique(labels)
    return np.stack([rows, uniq[cols]], axis=1)


def accuracy(classes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of points whose cluster is matched to their label (exact Hungarian matching)."""
    _, lab = np.unique(labels, return_inverse=True)
    cm = confusion(np.asarray(classes), lab)
    rows, cols = linear_sum_assignment(-cm)
    return float(cm[rows, cols].sum() / len(labels))


def accuracy_under(classes: np.ndarray, labels: np.ndarray, matching: np.ndarray) -> float:
    """Fraction of points whose cluster is matched to their label by a given ``matching``.

    Parameters
    ----------
    classes : numpy.ndarray, shape (N,), int
    labels : numpy.ndarray, shape (N,), int
    matching : numpy.ndarray, shape (M, 2), int
        Rows (cluster, label), as :func:`best_matching` returns (learned on other data).
        Points of a cluster the matching leaves out count as wrong.
    """
    classes = np.asarray(classes, dtype=np.int64)
    pairs = np.asarray(matching, dtype=np.int64).reshape(-1, 2)
    size = int(max(classes.max(initial=0), pairs[:, 0].max(initial=0))) + 1
    matched, label_of = np.zeros(size, dtype=bool), np.zeros(size, dtype=np.int64)
    matched[pairs[:, 0]], label_of[pairs[:, 0]] = True, pairs[:, 1]
    return float(np.mean(matched[classes] & (label_of[classes] == np.asarray(labels))))


def matched_transitions(learned: np.ndarray, classes: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """A learned transition matrix over clusters, read as one over labels.

    Clusters are matched one-to-one to labels by the Hungarian assignment that
    maximises agreement of ``classes`` with ``labels`` (as :func:`accuracy`);
    entry (a, b) is the learned probability of moving from the cluster matched
    to label a to the cluster matched to label b.  Mass towards clusters left
    unmatched (when there are more clusters than labels) is dropped, so rows
    may sum to less than one.

    Parameters
    ----------
    learned : numpy.ndarray, shape (C, C)
        Row-stochastic transitions between clusters, C >= n_labels.
    classes : numpy.ndarray, shape (N,), int in [0, C)
        Cluster of every point.
    labels : numpy.ndarray, shape (N,), int in [0, n_labels)
        True label of every point.
    n_labels : int
        L, the number of labels (rows of the true matrix).

    Returns
    -------
    numpy.ndarray, shape (L, L)
    """
    learned = np.asarray(learned, dtype=float)
    c = learned.shape[0]
    if learned.shape != (c, c) or c < n_labels:
        raise ValueError(f"learned transitions should have shape (C, C) with C >= {n_labels}, got {learned.shape}")
    classes, labels = np.asarray(classes), np.asarray(labels)
    if (
        classes.shape != labels.shape
        or classes.max() >= c
        or labels.max() >= n_labels
        or min(classes.min(), labels.min()) < 0
    ):
        raise ValueError(f"classes should be in [0, {c}) and labels in [0, {n_labels}), one per point")
    cm = np.zeros((c, n_labels), dtype=np.int64)
    np.add.at(cm, (classes, labels), 1)
    rows, cols = linear_sum_assignment(-cm)
    cluster_of = np.empty(n_labels, dtype=np.int64)
    cluster_of[cols] = rows
    return learned[np.ix_(cluster_of, cluster_of)]


def transition_distance(learned: np.ndarray, classes: np.ndarray, labels: np.ndarray, true: np.ndarray) -> float:
    """Mean over labels of the total-variation distance between true and learned transition rows.

    The learned matrix over clusters is matched to labels by
    :func:`matched_transitions`; mass it sends to unmatched clusters counts as
    distance.  0 is a perfect match, 1 disjoint rows.

    Parameters
    ----------
    learned : numpy.ndarray, shape (C, C)
    classes : numpy.ndarray, shape (N,), int in [0, C)
    labels : numpy.ndarray, shape (N,), int in [0, L)
    true : numpy.ndarray, shape (L, L)
        The reference transitions between labels (true chain or empirical).

    Returns
    -------
    float
        mean_a 1/2 sum_b |true[a, b] - matched[a, b]|, plus 1/2 of any mass lost to unmatched clusters.
    """
    true = np.asarray(true, dtype=float)
    matched = matched_transitions(learned, classes, labels, true.shape[0])
    lost = 1.0 - matched.sum(axis=1)
    return float((0.5 * (np.abs(true - matched).sum(axis=1) + lost)).mean())

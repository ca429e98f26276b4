"""Accuracy under the best one-to-one matching of clusters to labels."""

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

"""Ray-free starting partitions for the Gaussian mixture: k-means++ and a two-way split.

Every function takes its random generator explicitly; nothing uses global RNG.
"""

from __future__ import annotations

import numpy as np


def kmeans_plus_plus(x: np.ndarray, n_classes: int, rng: np.random.Generator, n_iter: int = 20) -> np.ndarray:
    """k-means++ seeding followed by Lloyd iterations; returns labels (N,)."""
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, n_classes):
        total = d2.sum()
        idx = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(axis=1))
    c = np.array(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(n_iter):
        dist = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
        labels = np.argmin(dist, axis=1)
        for j in range(n_classes):
            members = labels == j
            if members.any():
                c[j] = x[members].mean(axis=0)
    return labels


def split_in_two(x: np.ndarray, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """Split the rows of ``x`` (n, d) in two by Lloyd's algorithm from a far-apart pair.

    The pair: the row farthest from a random row, then the row farthest from
    that one.  Stops early when the split no longer changes or a side empties.

    Returns
    -------
    numpy.ndarray, shape (n,), bool
        Which of the two groups each row joins.
    """
    n = x.shape[0]
    buf = np.empty_like(x)

    def sq_dist(c: np.ndarray) -> np.ndarray:  # ((x - c) ** 2).sum(axis=1), the same bits, one temporary
        np.subtract(x, c, out=buf)
        np.multiply(buf, buf, out=buf)
        return buf.sum(axis=1)

    c1 = x[np.argmax(sq_dist(x[rng.integers(n)]))]
    c0 = x[np.argmax(sq_dist(c1))]
    side = np.zeros(n, dtype=bool)
    for i in range(n_iter):
        new = sq_dist(c1) < sq_dist(c0)
        if new.all() or not new.any() or (i > 0 and np.array_equal(new, side)):
            break
        side = new
        c0, c1 = x[~side].mean(axis=0), x[side].mean(axis=0)
    return side

"""Ray-free Gaussian emissions of hard labels, recomputed only for the clusters a move touches.

:func:`actors.sequence_core.search` scores many candidate relabellings, each of
which differs from the current labels in two or three clusters.  The emission
log-likelihood of a cluster (its posterior-mean Gaussian evaluated at every
point) depends only on that cluster's own points, so a candidate's emissions
are the current ones with the touched clusters' columns recomputed.  The result
equals :func:`actors.sequence_core.emission_log_likelihood` of the candidate's
one-hot memberships bit for bit: every per-cluster quantity goes through the same
numpy calls on the same inputs (tests/test_label_emissions.py checks it).
"""

from __future__ import annotations

import numpy as np

from actors import gmm_core


class LabelEmissions:
    """``emission_log_likelihood(x, eye[labels], prior)`` for labels near a base labelling.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,), int in [0, K)
        The base labels.
    n_classes : int
        K.
    prior : gmm_core.NIWPrior

    Attributes
    ----------
    base : numpy.ndarray, shape (N, K)
        The emissions of the base labels.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, prior: gmm_core.NIWPrior) -> None:
        self.x, self.labels, self.n_classes, self.prior = x, labels, n_classes, prior
        self.eye = np.eye(n_classes)
        weights = self.eye[labels]
        counts, sums, xbar = gmm_core.weighted_moments(x, weights)
        self.scatter = np.empty((n_classes, x.shape[1], x.shape[1]))
        gmm_core.weighted_scatter(x, weights, xbar, range(n_classes), self.scatter)
        post = gmm_core._niw_update(prior, counts, sums, xbar, self.scatter)
        self.base = gmm_core.gaussian_log_likelihood(x, *gmm_core.point_estimate(post))

    def touched(self, labels: np.ndarray) -> np.ndarray:
        """The clusters (sorted ints) whose members differ between ``labels`` (N,) and the base."""
        changed = labels != self.labels
        hit = np.zeros(self.n_classes, dtype=bool)
        hit[labels[changed]] = True
        hit[self.labels[changed]] = True
        return np.flatnonzero(hit)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Emissions (N, K) of ``labels`` (N,): the base's columns, the touched clusters' recomputed."""
        touched = self.touched(labels)
        if touched.size == 0:
            return self.base.copy()
        weights = self.eye[labels]
        counts, sums, xbar = gmm_core.weighted_moments(self.x, weights)
        scatter = self.scatter.copy()
        gmm_core.weighted_scatter(self.x, weights, xbar, touched, scatter)
        means, prec_chol = gmm_core.point_estimate(gmm_core._niw_update(self.prior, counts, sums, xbar, scatter))
        out = self.base.copy()
        out[:, touched] = gmm_core.gaussian_log_likelihood(self.x, means[touched], prec_chol[touched])
        return out

"""Ray-free split/merge moves of a Bayesian Gaussian mixture, scored by its marginal likelihood.

A Gibbs sampler changes one label at a time, so it rarely leaves a clustering
in which one class is split over two clusters while two other classes share
one cluster: every single-point change makes the fit worse.  This module
proposes the joint move that repairs it,

* ``merge i,j + split s``: clusters i and j become one (number i) and cluster
  s is split in two by 2-means, one half taking the freed number j,

and keeps it when it raises the exact log marginal likelihood of the
partition, log p(X, z), with the class means, covariances and weights
integrated out under the Normal-inverse-Wishart and Dirichlet priors.  This is
an unsupervised criterion (no label is ever looked at) and needs no sequence,
unlike :mod:`actors.sequence_core`.  Candidates are ranked by the gain of
their merge and split computed apart (the marginal likelihood factorises over
clusters), then the best few are polished by a few classification-EM steps on
the points of the three clusters involved; the current labels get the same
polish before the comparison, so that a move wins by its structure, not by the
polish.  Every cluster a move does not touch keeps its number.

Every function takes its random generator explicitly; nothing uses global RNG.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy.special import multigammaln

from actors import gmm_core, mm_core

log = logging.getLogger(__name__)

_LOG_PI = float(np.log(np.pi))


def class_log_marginal(post: gmm_core.ClassPosterior, prior: gmm_core.NIWPrior) -> np.ndarray:
    """log p(points of class k) with the class's mean and covariance integrated out.

    Parameters
    ----------
    post : gmm_core.ClassPosterior
        The NIW posterior of each class given its points (K classes).
    prior : gmm_core.NIWPrior

    Returns
    -------
    numpy.ndarray, shape (K,)
        0 for an empty class.
    """
    d = post.mean.shape[1]
    prior_gamma, logdet0 = _prior_terms(prior)
    _, logdet_n = np.linalg.slogdet(post.scale)
    return (
        -0.5 * post.counts * d * _LOG_PI
        + multigammaln(0.5 * post.dof, d)
        - prior_gamma
        + 0.5 * prior.dof * logdet0
        - 0.5 * post.dof * logdet_n
        + 0.5 * d * (np.log(prior.kappa) - np.log(post.kappa))
    )


_PRIOR_TERMS: list[tuple[gmm_core.NIWPrior, float, float]] = []  # the last prior's terms (a search asks often)


def _prior_terms(prior: gmm_core.NIWPrior) -> tuple[float, float]:
    """multigammaln(nu0 / 2, d) and log det S0 of ``prior``, computed once per prior object."""
    if not _PRIOR_TERMS or _PRIOR_TERMS[0][0] is not prior:
        d = prior.scale.shape[0]
        _PRIOR_TERMS[:] = [(prior, multigammaln(0.5 * prior.dof, d), np.linalg.slogdet(prior.scale)[1])]
    return _PRIOR_TERMS[0][1], _PRIOR_TERMS[0][2]


def weights_log_marginal(counts: np.ndarray, concentration: float) -> float:
    """log p(z) of labels with class counts (K,) under a symmetric Dirichlet(concentration) on the weights
    (:func:`actors.mm_core.log_dirichlet_multinomial`)."""
    return float(mm_core.log_dirichlet_multinomial(counts, concentration))


def log_marginal(
    x: np.ndarray, labels: np.ndarray, n_classes: int, prior: gmm_core.NIWPrior, concentration: float
) -> float:
    """log p(X, z): the partition's marginal likelihood.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,), int in [0, K)
    n_classes : int
    prior : gmm_core.NIWPrior
    concentration : float
        Symmetric Dirichlet concentration on the mixture weights.
    """
    post = gmm_core.class_posterior(x, labels, n_classes, prior)
    return float(class_log_marginal(post, prior).sum()) + weights_log_marginal(post.counts, concentration)


def _group_log_marginal(x: np.ndarray, prior: gmm_core.NIWPrior) -> float:
    """log p(x) of one group of points (n, d) as a single class."""
    return float(
        class_log_marginal(gmm_core.class_posterior(x, np.zeros(x.shape[0], dtype=np.int64), 1, prior), prior)[0]
    )


def polish(
    x: np.ndarray, labels: np.ndarray, classes: tuple[int, ...], prior: gmm_core.NIWPrior, n_iter: int
) -> np.ndarray:
    """Classification-EM steps restricted to the points of ``classes``, among those classes.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,)
    classes : tuple of int
        The classes whose points may move (only among these classes).
    prior : gmm_core.NIWPrior
    n_iter : int
        Most steps; stops early when no point moves.

    Returns
    -------
    numpy.ndarray, shape (N,)
        New labels; points of other classes are unchanged.
    """
    order = np.sort(np.asarray(classes))
    rows = np.flatnonzero(np.isin(labels, order))
    local = np.searchsorted(order, labels[rows])
    xr = x[rows]
    for _ in range(n_iter):
        post = gmm_core.class_posterior(xr, local, len(order), prior)
        if (post.counts < 1).any():
            break
        means, prec_chol = gmm_core.point_estimate(post)
        log_w = gmm_core.gaussian_log_likelihood(xr, means, prec_chol) + np.log(post.counts)[None, :]
        new = np.argmax(log_w, axis=1)
        if np.array_equal(new, local):
            break
        local = new
    out = labels.copy()
    out[rows] = order[local]
    return out


@dataclasses.dataclass(frozen=True)
class MoveSearch:
    """Outcome of :func:`search`.

    Attributes
    ----------
    labels : numpy.ndarray, shape (N,)
    moves : list of str
        The moves taken, in order, with their gain in nats.
    """

    labels: np.ndarray
    moves: list[str]


def candidates(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    rng: np.random.Generator,
    n_best: int,
    min_size: int,
) -> list[tuple[float, int, int, int, np.ndarray]]:
    """The ``n_best`` (score, i, j, s, side of s's points) merge-and-split moves of highest separable gain."""
    members = [np.flatnonzero(labels == j) for j in range(n_classes)]
    own = np.array([_group_log_marginal(x[m], prior) if len(m) else 0.0 for m in members])
    splits: dict[int, tuple[float, np.ndarray]] = {}
    for s in range(n_classes):
        if len(members[s]) >= 2 * min_size:
            side = gmm_core.split_in_two(x[members[s]], rng, n_iter=20)
            if min(side.sum(), (~side).sum()) >= min_size:
                gain = (
                    _group_log_marginal(x[members[s][side]], prior)
                    + _group_log_marginal(x[members[s][~side]], prior)
                    - own[s]
                )
                splits[s] = (gain, side)
    found = []
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            merge = _group_log_marginal(x[np.concatenate([members[i], members[j]])], prior) - own[i] - own[j]
            for s, (gain, side) in splits.items():
                if s not in (i, j):
                    found.append((merge + gain, i, j, s, side))
    found.sort(key=lambda c: -c[0])
    return found[:n_best]


def search(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: gmm_core.NIWPrior,
    rng: np.random.Generator,
    *,
    concentration: float = 1.0,
    max_moves: int = 8,
    n_best: int = 5,
    min_gain: float = 10.0,
    polish_iterations: int = 10,
    min_size: int = 4,
) -> MoveSearch:
    """Greedy merge-and-split search that raises the partition's marginal likelihood.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,), int in [0, K)
        Current labels.
    n_classes : int
    prior : gmm_core.NIWPrior
    rng : numpy.random.Generator
    concentration : float
        Symmetric Dirichlet concentration on the mixture weights.
    max_moves : int
        Most moves taken.
    n_best : int
        Candidates polished and scored exactly per move.
    min_gain : float
        Least gain of log p(X, z), in nats, for a move to be taken.
    polish_iterations : int
        Classification-EM steps of :func:`polish` on each candidate and on the current labels.
    min_size : int
        Smallest half of a split.

    Returns
    -------
    MoveSearch
    """
    taken: list[str] = []
    if n_classes < 3:
        return MoveSearch(labels, taken)
    for _ in range(max_moves):
        best: tuple[float, str, np.ndarray] | None = None
        for _, i, j, s, side in candidates(x, labels, n_classes, prior, rng, n_best, min_size):
            touched = (i, j, s)
            base = polish(x, labels, touched, prior, polish_iterations)
            base_score = log_marginal(x, base, n_classes, prior, concentration)
            new = labels.copy()
            new[labels == j] = i
            rows_s = np.flatnonzero(labels == s)
            new[rows_s[side]] = j
            new = polish(x, new, touched, prior, polish_iterations)
            gain = log_marginal(x, new, n_classes, prior, concentration) - base_score
            if gain >= min_gain and (best is None or gain > best[0]):
                best = (gain, f"merge {i},{j} + split {s}", new)
        if best is None:
            break
        taken.append(f"{best[1]} (+{best[0]:.1f} nats)")
        log.debug("took %s", taken[-1])
        labels = best[2]
    return MoveSearch(labels, taken)

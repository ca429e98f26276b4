"""Ray-free numerical core of the Bayesian Gaussian mixture.

The mixture has a Dirichlet prior on its weights and a Normal-inverse-Wishart
(Gauss-Wishart on the precision) prior on each class's mean and covariance.  It
is sampled by *blocked* Gibbs sampling: given all labels, draw the weights and
every class's (mean, precision) from their conjugate posteriors; given those,
draw every label at once.  Each sweep is a handful of vectorised numpy calls,
so the cost is O(N K d^2) per sweep with no per-point Python loop, unlike the
original's collapsed sampler which visits points one by one.

Every function takes its random generator explicitly; nothing uses global RNG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

# Starting partitions live in actors.gmm_init; re-exported here for callers of gmm_core.
from actors.gmm_init import kmeans_plus_plus as kmeans_plus_plus
from actors.gmm_init import split_in_two as split_in_two

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclasses.dataclass(frozen=True)
class NIWPrior:
    """Normal-inverse-Wishart prior shared by every class.

    Attributes
    ----------
    mean : numpy.ndarray, shape (d,)
        Prior mean m0 of the class means.
    kappa : float
        Pseudo-count r0 on the mean.
    dof : float
        Degrees of freedom nu0 (> d - 1).
    scale : numpy.ndarray, shape (d, d)
        Inverse-Wishart scale S0 of the class covariances.
    """

    mean: np.ndarray
    kappa: float
    dof: float
    scale: np.ndarray


def default_prior(x: np.ndarray, kappa: float = 1.0, scale: float = 0.1, dof: float | None = None) -> NIWPrior:
    """The original's prior: m0 = data mean, r0 = 1, nu0 = d + 2, S0 = scale * I.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
        Data the prior is centred on.
    """
    d = x.shape[1]
    return NIWPrior(
        mean=x.mean(axis=0),
        kappa=float(kappa),
        dof=float(d + 2 if dof is None else dof),
        scale=np.eye(d) * float(scale),
    )


def data_covariance(x: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Empirical covariance of the data with a small ridge, so that it is positive definite.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    ridge : float
        Added to the diagonal as a fraction of the mean variance (constant or
        duplicated dimensions would make the covariance singular).

    Returns
    -------
    numpy.ndarray, shape (d, d)
    """
    d = x.shape[1]
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)
    floor = ridge * max(float(np.trace(cov)) / d, 1e-12)
    return 0.5 * (cov + cov.T) + floor * np.eye(d)


def mixture_prior(
    x: np.ndarray,
    kappa: float,
    scale: float,
    strength: float,
    relative_to: str = "identity",
) -> NIWPrior:
    """NIW prior whose class covariances have prior mean ``scale * C``, backed by ``strength`` pseudo-points.

    ``C`` is the identity (``relative_to="identity"``, the original's
    absolute prior) or the data's covariance (``relative_to="data"``, an
    empirical-Bayes prior as scikit-learn's ``BayesianGaussianMixture``
    uses by default): then the prior means the same thing whatever the
    scale and correlations of the latents, and a class can never be
    expected to be broader than the whole data set when ``scale < 1``.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
        Data the prior is centred on (m0 = its mean).
    kappa : float
        r0, pseudo-count on the class means.
    scale : float
        Prior mean of each class covariance, as a multiple of ``C``.
    strength : float
        Pseudo-points behind it: nu0 = d + 1 + strength, S0 = scale * strength * C.
    relative_to : {"identity", "data"}

    Returns
    -------
    NIWPrior
    """
    d = x.shape[1]
    base = data_covariance(x) if relative_to == "data" else np.eye(d)
    return NIWPrior(
        mean=x.mean(axis=0), kappa=float(kappa), dof=float(d + 1.0 + strength), scale=base * float(scale * strength)
    )


@dataclasses.dataclass(frozen=True)
class ClassPosterior:
    """Conjugate posterior of every class given hard labels.

    Attributes
    ----------
    counts : numpy.ndarray, shape (K,)
    kappa, dof : numpy.ndarray, shape (K,)
    mean : numpy.ndarray, shape (K, d)
    scale : numpy.ndarray, shape (K, d, d)
    """

    counts: np.ndarray
    kappa: np.ndarray
    dof: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def mean_covariance(self) -> np.ndarray:
        """Posterior mean of each class covariance, shape (K, d, d)."""
        d = self.mean.shape[1]
        return self.scale / np.maximum(self.dof - d - 1.0, 1e-3)[:, None, None]


def class_posterior(x: np.ndarray, labels: np.ndarray, n_classes: int, prior: NIWPrior) -> ClassPosterior:
    """Update the NIW prior with the points of each class.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,), int in [0, K)
    n_classes : int
        K.
    prior : NIWPrior

    Returns
    -------
    ClassPosterior
    """
    d = x.shape[1]
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    sums = np.zeros((n_classes, d))
    xbar = np.zeros((n_classes, d))
    scatter = np.zeros((n_classes, d, d))
    grouped = x[np.argsort(labels, kind="stable")]  # one gather; each class's rows are then a slice
    bounds = np.concatenate(([0], np.cumsum(counts).astype(np.int64)))
    for j in range(n_classes):  # K BLAS calls on each class's rows; K is small.
        rows = grouped[bounds[j] : bounds[j + 1]]
        if rows.shape[0] == 0:
            continue
        sums[j] = rows.sum(axis=0)
        xbar[j] = sums[j] / rows.shape[0]
        centred = rows - xbar[j]
        scatter[j] = centred.T @ centred
    return _niw_update(prior, counts, sums, xbar, scatter)


def _niw_update(
    prior: NIWPrior, counts: np.ndarray, sums: np.ndarray, xbar: np.ndarray, scatter: np.ndarray
) -> ClassPosterior:
    """Conjugate NIW update from per-class counts (K,), sums and means (K, d) and scatters (K, d, d)."""
    d = xbar.shape[1]
    kappa_n = prior.kappa + counts
    dof_n = prior.dof + counts
    mean_n = (prior.kappa * prior.mean[None, :] + sums) / kappa_n[:, None]
    diff = xbar - prior.mean[None, :]
    shrink = (prior.kappa * counts / kappa_n)[:, None, None]
    scale_n = prior.scale[None] + scatter + shrink * np.einsum("kd,ke->kde", diff, diff)
    scale_n = 0.5 * (scale_n + np.transpose(scale_n, (0, 2, 1))) + 1e-9 * np.eye(d)[None]
    return ClassPosterior(counts=counts, kappa=kappa_n, dof=dof_n, mean=mean_n, scale=scale_n)


def weighted_class_posterior(x: np.ndarray, weights: np.ndarray, prior: NIWPrior) -> ClassPosterior:
    """:func:`class_posterior` with soft memberships (an EM M-step under the NIW prior).

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    weights : numpy.ndarray, shape (N, K)
        Membership of each point in each class (rows usually sum to one).
    prior : NIWPrior

    Returns
    -------
    ClassPosterior
    """
    counts, sums, xbar = weighted_moments(x, weights)
    scatter = np.empty((weights.shape[1], x.shape[1], x.shape[1]))
    weighted_scatter(x, weights, xbar, range(weights.shape[1]), scatter)
    return _niw_update(prior, counts, sums, xbar, scatter)


def weighted_moments(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft counts (K,), sums (K, d) and means (K, d) of the points (N, d) under memberships ``weights`` (N, K)."""
    counts = weights.sum(axis=0)
    sums = weights.T @ x
    return counts, sums, sums / np.maximum(counts, 1e-12)[:, None]


def weighted_scatter(
    x: np.ndarray, weights: np.ndarray, xbar: np.ndarray, classes: Iterable[int], out: np.ndarray
) -> None:
    """Fill ``out[j]`` (d, d) with class j's weighted scatter about ``xbar[j]``, for each j of ``classes``.

    Each class's scatter depends only on its own column of ``weights`` (N, K) and its
    own mean, so recomputing some classes gives the same bits as recomputing all.
    """
    for j in classes:  # K BLAS calls; K is small.
        centred = x - xbar[j]
        out[j] = (centred * weights[:, j, None]).T @ centred


def _cholesky(mats: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(mats)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            f"{what} is not positive definite; the latent data may be degenerate "
            "(constant or duplicated dimensions). Increase the GMM's prior scale."
        ) from exc


def sample_parameters(post: ClassPosterior, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw each class's mean and precision from the NIW posterior.

    Uses the Bartlett decomposition: Lambda = (L A)(L A)^T ~ Wishart(S^-1, nu)
    with L = chol(S^-1); then mu ~ N(m, (kappa Lambda)^-1).

    Returns
    -------
    means : numpy.ndarray, shape (K, d)
    prec_chol : numpy.ndarray, shape (K, d, d)
        Lower Cholesky factor C of each precision, Lambda = C C^T.
    """
    k, d = post.mean.shape
    inv_scale = np.linalg.inv(post.scale)
    inv_scale = 0.5 * (inv_scale + np.transpose(inv_scale, (0, 2, 1)))
    chol = _cholesky(inv_scale, "a class's posterior scale matrix")
    a = np.tril(rng.standard_normal((k, d, d)), -1)
    dfs = post.dof[:, None] - np.arange(d)[None, :]
    a[:, np.arange(d), np.arange(d)] = np.sqrt(rng.chisquare(dfs))
    prec_chol = chol @ a
    # mu = m + C^{-T} eps / sqrt(kappa): solve C^T y = eps.
    eps = rng.standard_normal((k, d, 1))
    y = np.linalg.solve(np.transpose(prec_chol, (0, 2, 1)), eps)[..., 0]
    means = post.mean + y / np.sqrt(post.kappa)[:, None]
    return means, prec_chol


def point_estimate(post: ClassPosterior) -> tuple[np.ndarray, np.ndarray]:
    """Posterior-mean parameters: class means and Cholesky factors of the precisions.

    Returns
    -------
    means : numpy.ndarray, shape (K, d)
    prec_chol : numpy.ndarray, shape (K, d, d)
    """
    prec = np.linalg.inv(post.mean_covariance())
    prec = 0.5 * (prec + np.transpose(prec, (0, 2, 1)))
    return post.mean.copy(), _cholesky(prec, "a class's mean covariance")


def gaussian_log_likelihood(x: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
    """log N(x_n | mu_k, Lambda_k^-1) for every point and class.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    means : numpy.ndarray, shape (K, d)
    prec_chol : numpy.ndarray, shape (K, d, d)
        Lower Cholesky factors C_k with Lambda_k = C_k C_k^T.

    Returns
    -------
    numpy.ndarray, shape (N, K)
    """
    n, d = x.shape
    k = means.shape[0]
    out = np.empty((n, k))
    log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    for j in range(k):  # K BLAS calls of (N, d) @ (d, d); K is small.
        y = (x - means[j]) @ prec_chol[j]
        out[:, j] = log_det[j] - 0.5 * np.einsum("nd,nd->n", y, y)
    out -= 0.5 * d * _LOG_2PI
    return out


def log_prior(probs: np.ndarray) -> np.ndarray:
    """Log of a per-point class prior (N, K) (the MM's message), zeros floored at 1e-300."""
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(probs, 1e-300))


def posterior_log_weights(
    log_lik: np.ndarray, log_weights: np.ndarray, log_bias: np.ndarray | None = None, class_axis: int = 1
) -> np.ndarray:
    """Unnormalised log P(class | point): log p(x_n | k) + log pi_k (+ a per-point log prior).

    The one place learning (every Gibbs sweep) and recognition (:meth:`Mixture.classify`) weigh
    the classes; :func:`normalise_log` turns the result into probabilities.

    Parameters
    ----------
    log_lik : numpy.ndarray, shape (N, K), or (K, N) with ``class_axis=0``
    log_weights : numpy.ndarray, shape (K,)
    log_bias : numpy.ndarray, shaped as ``log_lik``, optional
    class_axis : int
        Axis of ``log_lik`` that runs over the classes (the sweeps keep their arrays class-major).

    Returns
    -------
    numpy.ndarray, shaped as ``log_lik``
    """
    log_w = log_lik + (log_weights[None, :] if class_axis == 1 else log_weights[:, None])
    if log_bias is not None:
        log_w += log_bias  # in place: the same sum, one temporary fewer
    return log_w


class Classified(NamedTuple):
    """Class posteriors of points under a learned mixture.

    Attributes
    ----------
    probs : numpy.ndarray, shape (N, K)
        P(class | point, prior).
    log_likelihood : numpy.ndarray, shape (N, K)
        log p(point | class).
    """

    probs: np.ndarray
    log_likelihood: np.ndarray


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A learned mixture: class means, covariances and weights, in the latents' units.

    Attributes
    ----------
    means : numpy.ndarray, shape (K, d)
    covariances : numpy.ndarray, shape (K, d, d)
    weights : numpy.ndarray, shape (K,)
    """

    means: np.ndarray
    covariances: np.ndarray
    weights: np.ndarray

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """log N(x_n | mu_k, Sigma_k) (N, K) for points ``x`` (N, d)."""
        prec = np.linalg.inv(self.covariances)
        prec_chol = _cholesky(0.5 * (prec + np.transpose(prec, (0, 2, 1))), "a learned class's covariance")
        return gaussian_log_likelihood(x, self.means, prec_chol)

    def classify(self, x: np.ndarray, log_bias: np.ndarray | None = None) -> Classified:
        """P(k | x_n) ∝ w_k N(x_n | mu_k, Sigma_k), times ``exp(log_bias)`` (N, K) when given."""
        log_lik = self.log_likelihood(x)
        return Classified(normalise_log(posterior_log_weights(log_lik, np.log(self.weights), log_bias)), log_lik)


def normalise_log(log_w: np.ndarray, class_axis: int = 1) -> np.ndarray:
    """Normalise log weights (N, K) into probabilities along ``class_axis`` (0 for class-major (K, N)), in log space."""
    shifted = log_w - log_w.max(axis=class_axis, keepdims=True)
    with np.errstate(under="ignore"):
        p = np.exp(shifted)
    p /= p.sum(axis=class_axis, keepdims=True)
    return p


class QuadraticFeatures:
    """The points' quadratic features, computed once, so that a Gibbs sweep is two matrix products.

    With ``x`` centred on its mean, the features of a point are ``[x_i x_j (i <= j), x, 1]``
    (Q = d(d+1)/2 + d + 1 of them), kept class-major as an array (Q, N).  Every class's
    Gaussian log-density is then one row of ``W @ F`` for a weight matrix W (K, Q) built from
    the means and precisions, and every class's count, sum and second moment is
    ``onehot @ F.T``: the sweep's two O(N K d^2) steps become one BLAS call each instead of
    K calls plus per-class temporaries, and the per-point steps (normalising, sampling) run
    along the long axis.  Centring keeps the expanded quadratic forms well conditioned (the
    result differs from :func:`gaussian_log_likelihood` by rounding only).

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    """

    def __init__(self, x: np.ndarray) -> None:
        d = x.shape[1]
        self.d = d
        self.centre = x.mean(axis=0)
        xc = (x - self.centre).T  # (d, N)
        self.iu = np.triu_indices(d)
        q = len(self.iu[0])
        self.q = q
        self.features = np.empty((q + d + 1, x.shape[0]))  # (Q, N)
        np.multiply(xc[self.iu[0]], xc[self.iu[1]], out=self.features[:q])
        self.features[q : q + d] = xc
        self.features[-1] = 1.0
        self._rows = np.ascontiguousarray(self.features.T)  # (N, Q) for the class moments
        self._off = np.where(self.iu[0] == self.iu[1], -0.5, -1.0)
        self._features32: np.ndarray | None = None  # made on the first single-precision call

    def log_likelihood(self, means: np.ndarray, prec_chol: np.ndarray, single: bool = False) -> np.ndarray:
        """log N(x_n | mu_k, (C_k C_k^T)^-1), class-major (K, N); :func:`gaussian_log_likelihood` transposed.

        Parameters
        ----------
        means : numpy.ndarray, shape (K, d)
        prec_chol : numpy.ndarray, shape (K, d, d)
        single : bool
            Form the product in float32 (half the time; the sweeps' sampling
            weights): on a tutorial round's latents the log-densities then differ
            from float64's by at most ~2e-5 nats, the class probabilities by ~4e-6.
            The weights themselves are always built in float64.
        """
        d, q = self.d, self.q
        prec = prec_chol @ np.transpose(prec_chol, (0, 2, 1))
        mu = means - self.centre
        lin = np.einsum("kde,ke->kd", prec, mu)
        log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
        w = np.empty((means.shape[0], self.features.shape[0]))
        w[:, :q] = self._off[None, :] * prec[:, self.iu[0], self.iu[1]]
        w[:, q : q + d] = lin
        w[:, -1] = log_det - 0.5 * np.einsum("kd,kd->k", lin, mu) - 0.5 * d * _LOG_2PI
        if single:
            if self._features32 is None:
                self._features32 = self.features.astype(np.float32)
            return (w.astype(np.float32) @ self._features32).astype(np.float64)
        return w @ self.features

    def moments(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        """Every class's sums of the features (K, Q): the second moments, sums and count, in one product."""
        onehot = (labels[None, :] == np.arange(n_classes)[:, None]).astype(float)  # (K, N)
        return onehot @ self._rows

    def move(self, moments: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """:meth:`moments` of labels ``new`` (N,) from those of ``old``: only the points whose label changed.

        Each moved point's features are subtracted from its old class and added to
        its new one, so the result equals a recomputation up to rounding (the counts
        exactly).  Costs O(m Q) for m moved points instead of O(N K Q).
        """
        moved = np.flatnonzero(old != new)
        if moved.size == 0:
            return moments
        classes = np.arange(moments.shape[0])[:, None]
        diff = (new[moved][None, :] == classes).astype(float) - (old[moved][None, :] == classes)  # (K, m)
        return moments + diff @ self._rows[moved]

    def class_posterior(self, labels: np.ndarray, n_classes: int, prior: NIWPrior) -> ClassPosterior:
        """:func:`class_posterior` from the features: every class's count, sum and scatter in one product."""
        return self.posterior_from_moments(self.moments(labels, n_classes), prior)

    def posterior_from_moments(self, moments: np.ndarray, prior: NIWPrior) -> ClassPosterior:
        """:func:`class_posterior` from :meth:`moments` (K, Q)."""
        d, q = self.d, self.q
        n_classes = moments.shape[0]
        counts = np.rint(moments[:, -1])
        sums_c = moments[:, q : q + d]
        xbar_c = sums_c / np.maximum(counts, 1.0)[:, None]
        second = np.empty((n_classes, d, d))
        second[:, self.iu[0], self.iu[1]] = moments[:, :q]
        second[:, self.iu[1], self.iu[0]] = moments[:, :q]
        scatter = second - counts[:, None, None] * np.einsum("kd,ke->kde", xbar_c, xbar_c)
        sums = sums_c + counts[:, None] * self.centre[None, :]
        xbar = np.where(counts[:, None] > 0, xbar_c + self.centre[None, :], 0.0)
        return _niw_update(prior, counts, sums, xbar, scatter)


RECOMPUTE_EVERY = 10  # sweeps between full recomputations of the class moments in gibbs_sweeps


def _sample_columns(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per column of class-major probabilities (K, N), by inverting its CDF with one uniform."""
    cdf = np.cumsum(probs, axis=0)
    u = rng.random(probs.shape[1]) * cdf[-1]
    return np.minimum((cdf < u[None, :]).sum(axis=0), probs.shape[0] - 1)


@dataclasses.dataclass(frozen=True)
class GibbsResult:
    """Outcome of a run of Gibbs sweeps.

    Attributes
    ----------
    labels : numpy.ndarray, shape (N,)
        Labels of the last sweep (the sampler's state).
    probs : numpy.ndarray, shape (N, K)
        P(class | point, prior) averaged over the kept sweeps (Rao-Blackwellised).
    log_likelihood : numpy.ndarray, shape (N, K)
        log p(point | class) under the posterior-mean parameters of the last labels.
    class_means : numpy.ndarray, shape (K, d)
        Posterior mean of each class mean given the last labels.
    counts : numpy.ndarray, shape (K,)
        Points per class in the last sweep.
    weights : numpy.ndarray, shape (K,)
        Posterior mean of the mixture weights.
    covariances : numpy.ndarray, shape (K, d, d)
        Posterior mean of each class covariance given the last labels.
    """

    labels: np.ndarray
    probs: np.ndarray
    log_likelihood: np.ndarray
    class_means: np.ndarray
    counts: np.ndarray
    weights: np.ndarray
    covariances: np.ndarray


def gibbs_sweeps(
    x: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    prior: NIWPrior,
    rng: np.random.Generator,
    n_sweeps: int,
    log_bias: np.ndarray | None = None,
    weight_concentration: float = 1.0,
    burn_in: float = 0.5,
    refresh: Callable[[np.ndarray], np.ndarray] | None = None,
    refresh_every: int = 0,
) -> GibbsResult:
    """Run ``n_sweeps`` blocked Gibbs sweeps from ``labels``.

    Parameters
    ----------
    x : numpy.ndarray, shape (N, d)
    labels : numpy.ndarray, shape (N,)
        Initial labels.
    n_classes : int
    prior : NIWPrior
    rng : numpy.random.Generator
    n_sweeps : int
    log_bias : numpy.ndarray, shape (N, K), optional
        Log of a per-point class prior (the MM's message); added to every point's
        log weights.
    weight_concentration : float
        Symmetric Dirichlet concentration on the mixture weights.
    burn_in : float
        Fraction of the sweeps discarded before averaging ``probs``.
    refresh : callable, optional
        ``refresh(labels) -> log_bias``: recomputes the per-point log prior from
        the current labels (a Markov chain's message that follows the sampler).
    refresh_every : int
        Sweeps between calls of ``refresh`` (0 never calls it).

    Returns
    -------
    GibbsResult
    """
    n = x.shape[0]
    keep_from = min(int(n_sweeps * burn_in), n_sweeps - 1)
    kept = 0
    quad = QuadraticFeatures(x)
    bias_t = None if log_bias is None else np.ascontiguousarray(log_bias.T)
    prob_sum = np.zeros((n_classes, n))  # class-major, as every array of the loop
    moments = quad.moments(labels, n_classes)
    for sweep in range(n_sweeps):
        if refresh is not None and refresh_every > 0 and sweep > 0 and sweep % refresh_every == 0:
            bias_t = np.ascontiguousarray(refresh(labels).T)
        post = quad.posterior_from_moments(moments, prior)
        log_pi = np.log(rng.dirichlet(post.counts + weight_concentration))
        means, prec_chol = sample_parameters(post, rng)
        log_w = posterior_log_weights(quad.log_likelihood(means, prec_chol, single=True), log_pi, bias_t, class_axis=0)
        probs = normalise_log(log_w, class_axis=0)
        if sweep >= keep_from:
            prob_sum += probs
            kept += 1
        drawn = _sample_columns(probs, rng)
        if sweep + 1 < n_sweeps:
            # a full product every RECOMPUTE_EVERY sweeps keeps the running sums' rounding from drifting
            full = (sweep + 1) % RECOMPUTE_EVERY == 0
            moments = quad.moments(drawn, n_classes) if full else quad.move(moments, labels, drawn)
        labels = drawn
    post = class_posterior(x, labels, n_classes, prior)
    means, prec_chol = point_estimate(post)
    weights = (post.counts + weight_concentration) / (n + n_classes * weight_concentration)
    return GibbsResult(
        labels=labels,
        probs=np.ascontiguousarray(prob_sum.T) / kept,
        log_likelihood=gaussian_log_likelihood(x, means, prec_chol),
        class_means=post.mean,
        counts=post.counts,
        weights=weights,
        covariances=post.mean_covariance(),
    )

"""The GMM's numerical core against independent references (scipy, scikit-learn, brute force); no Ray."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare, multivariate_normal, wishart
from sklearn.mixture import GaussianMixture

from actors import gmm_core
from actors.config import GMMConfig
from actors.gmm import GMMWorker
from actors.scoring import accuracy
from messages import ClassPrior, Latents


def _blobs(rng: np.random.Generator, n_per: int = 200, d: int = 3, k: int = 4, spread: float = 6.0):
    centres = rng.normal(scale=spread, size=(k, d))
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, d)) for c in centres])
    y = np.repeat(np.arange(k), n_per)
    return x, y


def test_log_likelihood_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    means = rng.normal(size=(2, 3))
    covs = np.stack([np.eye(3) * 0.5 + 0.1, np.diag([1.0, 2.0, 3.0])])
    prec_chol = np.linalg.cholesky(np.linalg.inv(covs))
    got = gmm_core.gaussian_log_likelihood(x, means, prec_chol)
    want = np.stack([multivariate_normal(means[j], covs[j]).logpdf(x) for j in range(2)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_quadratic_features_match_the_direct_log_density_and_class_statistics() -> None:
    """The sweep's one-product forms equal scipy's log-densities and the per-class loop, to rounding."""
    rng = np.random.default_rng(11)
    x = rng.normal(loc=3.0, size=(300, 4)) * np.array([1.0, 0.2, 5.0, 1.0])  # off-centre, uneven scales
    labels = rng.integers(0, 4, size=300)
    labels[labels == 2] = 3  # an empty class
    means = rng.normal(loc=3.0, size=(4, 4))
    covs = np.stack([np.diag(rng.uniform(0.1, 3.0, 4)) + 0.05 for _ in range(4)])
    prec_chol = np.linalg.cholesky(np.linalg.inv(covs))
    quad = gmm_core.QuadraticFeatures(x)
    want = np.stack([multivariate_normal(means[j], covs[j]).logpdf(x) for j in range(4)])
    np.testing.assert_allclose(quad.log_likelihood(means, prec_chol), want, rtol=1e-9, atol=1e-9)
    prior = gmm_core.default_prior(x)
    a, b = gmm_core.class_posterior(x, labels, 4, prior), quad.class_posterior(labels, 4, prior)
    for field in ("counts", "kappa", "dof", "mean", "scale"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-9, atol=1e-9)


def test_moved_moments_equal_a_recomputation_and_single_precision_densities_stay_close() -> None:
    """The sweeps' running class moments (only moved points updated, 60 moves in a row, a class emptied and
    refilled) equal the full product to rounding, the counts exactly; the float32 log-densities are within 1e-4
    nats of float64's on well-scaled points."""
    rng = np.random.default_rng(13)
    x = rng.normal(loc=2.0, size=(500, 5)) * np.array([1.0, 0.3, 4.0, 1.0, 2.0])
    quad = gmm_core.QuadraticFeatures(x)
    labels = rng.integers(0, 4, size=500)
    moments = quad.moments(labels, 4)
    for step in range(60):
        new = labels.copy()
        flip = rng.random(500) < (0.5 if step % 7 == 0 else 0.05)
        new[flip] = rng.integers(0, 4, size=int(flip.sum()))
        if step == 20:
            new[new == 1] = 0  # class 1 emptied
        moments, labels = quad.move(moments, labels, new), new
    want = quad.moments(labels, 4)
    np.testing.assert_array_equal(np.rint(moments[:, -1]), np.bincount(labels, minlength=4))
    np.testing.assert_allclose(moments, want, rtol=1e-9, atol=1e-8)
    means = rng.normal(loc=2.0, size=(4, 5))
    covs = np.stack([np.diag(rng.uniform(0.2, 3.0, 5)) + 0.05 for _ in range(4)])
    prec_chol = np.linalg.cholesky(np.linalg.inv(covs))
    double = quad.log_likelihood(means, prec_chol)
    single = quad.log_likelihood(means, prec_chol, single=True)
    assert single.dtype == np.float64
    assert np.abs(single - double).max() < 1e-4
    assert not np.array_equal(single, double)  # it is the float32 product


def test_column_sampler_draws_each_class_with_its_probability() -> None:
    """One uniform per point through the CDF: class frequencies match the probabilities (chi-square)."""
    rng = np.random.default_rng(12)
    probs = np.array([[0.7, 0.0, 0.3], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]]).T  # (K, N): three points' columns
    draws = np.stack([gmm_core._sample_columns(np.repeat(probs, 2000, axis=1), rng) for _ in range(5)])
    for point in range(3):
        got = np.bincount(draws[:, point * 2000 : (point + 1) * 2000].ravel(), minlength=3)
        expected = probs[:, point] * got.sum()
        assert got[expected == 0].sum() == 0  # a zero-probability class is never drawn
        live = expected > 0
        if live.sum() > 1:
            assert chisquare(got[live], expected[live]).pvalue > 1e-3


def test_class_posterior_matches_brute_force_formulas() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 2))
    labels = rng.integers(0, 3, size=40)
    labels[:3] = [0, 1, 2]
    prior = gmm_core.NIWPrior(mean=np.array([0.5, -0.5]), kappa=2.0, dof=5.0, scale=np.eye(2) * 0.3)
    post = gmm_core.class_posterior(x, labels, 4, prior)
    for k in range(4):
        xs = x[labels == k]
        n = len(xs)
        assert post.counts[k] == n
        xbar = xs.mean(axis=0) if n else np.zeros(2)
        scatter = (xs - xbar).T @ (xs - xbar) if n else np.zeros((2, 2))
        want_scale = (
            prior.scale
            + scatter
            + (prior.kappa * n / (prior.kappa + n)) * np.outer(xbar - prior.mean, xbar - prior.mean)
        )
        np.testing.assert_allclose(post.scale[k], want_scale, atol=1e-8)
        np.testing.assert_allclose(post.mean[k], (prior.kappa * prior.mean + xs.sum(axis=0)) / (prior.kappa + n))
        assert post.dof[k] == prior.dof + n and post.kappa[k] == prior.kappa + n


def test_sampled_precisions_have_the_wishart_mean() -> None:
    rng = np.random.default_rng(3)
    scale = np.array([[2.0, 0.3], [0.3, 1.0]])
    post = gmm_core.ClassPosterior(
        counts=np.array([0.0]), kappa=np.array([4.0]), dof=np.array([7.0]), mean=np.zeros((1, 2)), scale=scale[None]
    )
    precs = []
    mus = []
    for _ in range(4000):
        m, c = gmm_core.sample_parameters(post, rng)
        precs.append(c[0] @ c[0].T)
        mus.append(m[0])
    want = wishart(df=7.0, scale=np.linalg.inv(scale)).mean()
    np.testing.assert_allclose(np.mean(precs, axis=0), want, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(np.mean(mus, axis=0), 0.0, atol=0.05)


def test_gibbs_recovers_separated_clusters_like_sklearn() -> None:
    rng = np.random.default_rng(4)
    x, y = _blobs(rng)
    labels0 = gmm_core.kmeans_plus_plus(x, 4, rng)
    res = gmm_core.gibbs_sweeps(x, labels0, 4, gmm_core.default_prior(x), rng, n_sweeps=30)
    ours = np.argmax(res.probs, axis=1)
    theirs = GaussianMixture(4, random_state=0).fit(x).predict(x)
    assert accuracy(ours, y) > 0.99
    assert accuracy(ours, theirs) > 0.99
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0)
    assert res.probs.min() >= 0.0


def test_bias_message_moves_ambiguous_points() -> None:
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(-1, 1, (300, 1)), rng.normal(1, 1, (300, 1))])
    labels = (x[:, 0] > 0).astype(int)
    bias = np.log(np.tile([0.99, 0.01], (600, 1)))
    res = gmm_core.gibbs_sweeps(x, labels, 2, gmm_core.default_prior(x), rng, 20, log_bias=bias)
    free = gmm_core.gibbs_sweeps(x, labels, 2, gmm_core.default_prior(x), np.random.default_rng(6), 20)
    assert res.probs[:, 0].mean() > free.probs[:, 0].mean() + 0.1


def test_worker_is_deterministic_and_keeps_numbering() -> None:
    rng = np.random.default_rng(7)
    x, _ = _blobs(rng)
    outs = []
    for _ in range(2):
        w = GMMWorker(GMMConfig(n_components=4, n_sweeps=10), "g", "m", "v", np.random.SeedSequence(11))
        lat = Latents(sender="v", receiver="g", round=0, z=x)
        p1, means, _ = w.update(0, lat)
        prior = ClassPrior(sender="m", receiver="g", round=0, probs=p1.probs)
        p2, _, _ = w.update(1, lat, prior)
        outs.append((p1.probs, p2.probs, means.means))
        # numbering is kept between rounds: round 2 agrees with round 1 cluster by cluster
        assert (np.argmax(p1.probs, 1) == np.argmax(p2.probs, 1)).mean() > 0.99
    for a, b in zip(outs[0], outs[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_gibbs_speed_budget_shape_only() -> None:
    """The tutorial's sizes run (timing is measured in bench/, not asserted here)."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3000, 18))
    res = gmm_core.gibbs_sweeps(x, rng.integers(0, 10, 3000), 10, gmm_core.default_prior(x), rng, 3)
    assert res.probs.shape == (3000, 10) and res.log_likelihood.shape == (3000, 10)
    assert res.class_means.shape == (10, 18)


def test_degenerate_data_gives_actionable_error() -> None:
    post = gmm_core.ClassPosterior(
        counts=np.array([1.0]),
        kappa=np.array([1.0]),
        dof=np.array([3.0]),
        mean=np.zeros((1, 2)),
        scale=-np.eye(2)[None],
    )
    with pytest.raises(ValueError, match="not positive definite"):
        gmm_core.sample_parameters(post, np.random.default_rng(0))

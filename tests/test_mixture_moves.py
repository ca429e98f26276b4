"""Merge-and-split moves and the data-relative prior of the mixture, against independent references; no Ray."""

from __future__ import annotations

import numpy as np
from scipy.stats import multivariate_t

from actors import gmm_core, mixture_moves
from actors.config import GMMConfig
from actors.gmm import GMMWorker
from actors.scoring import accuracy
from messages import Latents


def _blobs(rng: np.random.Generator, n_per: int = 150, d: int = 3, k: int = 4, spread: float = 6.0):
    centres = rng.normal(scale=spread, size=(k, d))
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, d)) for c in centres])
    return x, np.repeat(np.arange(k), n_per)


def test_class_marginal_equals_chain_of_student_t_predictives() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2)) @ np.array([[1.0, 0.3], [0.0, 0.7]])
    prior = gmm_core.NIWPrior(mean=np.array([0.2, -0.1]), kappa=1.5, dof=4.0, scale=np.array([[0.8, 0.1], [0.1, 0.5]]))
    got = mixture_moves._group_log_marginal(x, prior)
    want, d = 0.0, 2
    for i in range(len(x)):  # p(x_1..x_n) = prod_i p(x_i | x_<i), each a multivariate t
        post = gmm_core.class_posterior(x[:i], np.zeros(i, dtype=np.int64), 1, prior) if i else None
        m, kappa, nu, s = (
            (prior.mean, prior.kappa, prior.dof, prior.scale)
            if post is None
            else (post.mean[0], post.kappa[0], post.dof[0], post.scale[0])
        )
        df = nu - d + 1
        want += multivariate_t(loc=m, shape=s * (kappa + 1) / (kappa * df), df=df).logpdf(x[i])
    np.testing.assert_allclose(got, want, rtol=1e-8)  # _niw_update adds 1e-9 I to every scale


def test_weights_marginal_matches_dirichlet_multinomial_by_sequence() -> None:
    labels = np.array([0, 2, 2, 1, 2, 0])
    want, counts = 0.0, np.zeros(3)
    for c in labels:  # Polya urn: P(c | earlier) = (n_c + a) / (n + K a)
        want += np.log((counts[c] + 0.7) / (counts.sum() + 3 * 0.7))
        counts[c] += 1
    np.testing.assert_allclose(
        mixture_moves.weights_log_marginal(np.bincount(labels, minlength=3).astype(float), 0.7), want
    )


def test_search_repairs_a_split_class_and_a_merged_pair_without_labels() -> None:
    rng = np.random.default_rng(1)
    x, y = _blobs(rng)
    bad = y.copy()
    bad[y == 3] = 2  # classes 2 and 3 share cluster 2 ...
    half = np.flatnonzero(y == 0)[::2]
    bad[half] = 3  # ... and class 0 is split over clusters 0 and 3
    prior = gmm_core.mixture_prior(x, 1.0, 0.45, 5.0, "data")
    before = mixture_moves.log_marginal(x, bad, 4, prior, 1.0)
    found = mixture_moves.search(x, bad, 4, prior, rng, min_gain=1.0)
    assert found.moves and found.moves[0].startswith("merge 0,3 + split 2")
    assert accuracy(found.labels, y) > 0.99  # the blobs touch: a point or two sits in a neighbour
    assert mixture_moves.log_marginal(x, found.labels, 4, prior, 1.0) > before
    assert set(np.unique(found.labels[y == 1])) == {1}  # an untouched cluster keeps its number


def test_search_keeps_a_right_clustering() -> None:
    rng = np.random.default_rng(2)
    x, y = _blobs(rng)
    prior = gmm_core.mixture_prior(x, 1.0, 0.45, 5.0, "data")
    found = mixture_moves.search(x, y, 4, prior, rng)
    assert found.moves == [] and np.array_equal(found.labels, y)


def test_polish_moves_points_only_among_the_given_classes() -> None:
    rng = np.random.default_rng(3)
    x, y = _blobs(rng)
    noisy = y.copy()
    noisy[:20] = 1  # points of class 0 wrongly in 1
    noisy[-20:] = 2  # points of class 3 wrongly in 2
    prior = gmm_core.mixture_prior(x, 1.0, 0.45, 5.0, "data")
    out = mixture_moves.polish(x, noisy, (0, 1), prior, 10)
    assert np.array_equal(out[:20], y[:20])
    assert np.array_equal(out[-20:], noisy[-20:])  # classes 2 and 3 were not polished


def test_data_relative_prior_finds_clusters_in_narrow_latents() -> None:
    """A strong absolute prior (0.5 I) collapses latents much narrower than it; the data-relative one does not."""
    rng = np.random.default_rng(4)
    x, y = _blobs(rng, d=6)
    narrow = 0.01 * x
    lat = Latents(sender="v", receiver="g", round=0, z=narrow)
    found = []
    for cov in ("data", "identity"):
        w = GMMWorker(
            GMMConfig(n_components=4, n_sweeps=20, prior_covariance=cov, prior_scale=0.45),
            "g",
            "m",
            "v",
            np.random.SeedSequence(5),
        )
        post, _, _ = w.update(0, lat)
        found.append(accuracy(np.argmax(post.probs, 1), y))
    assert found[0] == 1.0 and found[1] < 0.5


def test_data_relative_prior_is_scale_free() -> None:
    rng = np.random.default_rng(6)
    x, _ = _blobs(rng)
    got = []
    for factor in (1.0, 250.0):
        w = GMMWorker(GMMConfig(n_components=4, n_sweeps=10), "g", "m", "v", np.random.SeedSequence(7))
        post, _, _ = w.update(0, Latents(sender="v", receiver="g", round=0, z=factor * x))
        got.append(np.argmax(post.probs, 1))
    np.testing.assert_array_equal(got[0], got[1])

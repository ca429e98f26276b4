"""Split/merge moves of a mixture under a Markov chain (actors/sequence_core.py); no Ray."""

from __future__ import annotations

import numpy as np

from actors import gmm_core, mm_core, sequence_core
from actors.config import GMMConfig
from actors.gmm import GMMWorker
from actors.scoring import accuracy
from messages import Latents


def _cycle(rng: np.random.Generator, n: int = 1000, k: int = 5, radius: float = 4.0):
    """Points of a deterministic k-cycle, each class a unit Gaussian on a circle."""
    y = np.arange(n) % k
    angles = 2.0 * np.pi * np.arange(k) / k
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres[y] + rng.normal(size=(n, 2)), y


def _planted(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A local optimum for EM: classes 3 and 4 share label 3, class 0 is split over labels 0 and 4."""
    bad = y.copy()
    bad[y == 4] = 3
    bad[(y == 0) & (rng.random(y.shape[0]) < 0.5)] = 4
    return bad


def test_search_repairs_a_merged_and_a_split_class() -> None:
    rng = np.random.default_rng(1)
    x, y = _cycle(rng)
    bad = _planted(y, rng)
    prior = gmm_core.default_prior(x)
    stuck = sequence_core.chain_fit(x, np.eye(5)[bad], prior, alpha=0.1, n_iter=3)
    assert accuracy(np.argmax(stuck.posterior, 1), y) < 0.9  # EM alone stays in the local optimum
    found = sequence_core.search(x, bad, 5, prior, np.random.default_rng(2), max_moves=4)
    assert found.moves and accuracy(found.labels, y) > 0.99
    assert found.fit.log_likelihood > stuck.log_likelihood + 100
    np.testing.assert_allclose(found.fit.transitions.sum(axis=1), 1.0)


def test_screened_search_repairs_as_the_full_search_does() -> None:
    # Many proposals, screened by a cheap fit, only two fitted in full: the same repair is found.
    rng = np.random.default_rng(1)
    x, y = _cycle(rng)
    bad = _planted(y, rng)
    prior = gmm_core.default_prior(x)
    full = sequence_core.search(x, bad, 5, prior, np.random.default_rng(2), max_moves=4, n_best=6)
    screened = sequence_core.search(
        x, bad, 5, prior, np.random.default_rng(2), max_moves=4, n_best=6, n_scored=2, screen_iterations=0
    )
    assert screened.moves and accuracy(screened.labels, y) > 0.99
    assert screened.fit.log_likelihood >= full.fit.log_likelihood - 1.0


def test_chain_fit_tempers_the_emissions() -> None:
    # emission_weight w: the chain over w * log N(x | class); the sequence then weighs more.
    rng = np.random.default_rng(5)
    x, y = _cycle(rng, n=400, radius=2.0)
    prior = gmm_core.default_prior(x)
    w = np.eye(5)[y]
    half = sequence_core.chain_fit(x, w, prior, alpha=0.1, n_iter=0, emission_weight=0.5)
    direct = mm_core.forward_backward(0.5 * sequence_core.emission_log_likelihood(x, w, prior), half.transitions, None)
    assert abs(half.log_likelihood - direct.log_likelihood) < 1e-6
    np.testing.assert_allclose(half.prior, direct.prior, atol=1e-9)
    bad = _planted(y, rng)
    found = sequence_core.search(x, bad, 5, prior, np.random.default_rng(2), max_moves=4, emission_weight=0.7)
    assert found.moves and accuracy(found.labels, y) > 0.95


def test_search_takes_no_move_when_none_helps() -> None:
    for extend in (0, 7):  # fitting the best candidate longer finds nothing to take either
        rng = np.random.default_rng(3)
        x, y = _cycle(rng)
        found = sequence_core.search(x, y, 5, gmm_core.default_prior(x), rng, max_moves=4, extend_iterations=extend)
        assert found.moves == [] and np.array_equal(found.labels, y)


def test_extend_fit_continues_em_without_losing_likelihood() -> None:
    rng = np.random.default_rng(6)
    x, y = _cycle(rng, n=600)
    bad = _planted(y, rng)
    prior = gmm_core.default_prior(x)
    fit = sequence_core.chain_fit(x, np.eye(5)[bad], prior, alpha=0.1, n_iter=1, emission_weight=0.7)
    assert sequence_core.extend_fit(x, fit, prior, 0.1, 0, emission_weight=0.7) is fit
    # one step, recomputed independently: the emissions refitted to the posterior, the same transitions
    one = sequence_core.extend_fit(x, fit, prior, 0.1, 5, emission_weight=0.7, tolerance=np.inf)
    log_em = 0.7 * sequence_core.emission_log_likelihood(x, fit.posterior, prior)
    initial = mm_core.initial_distribution(fit.posterior, None, 0.1)
    assert one.log_likelihood == mm_core.forward_log_likelihood(log_em, fit.transitions, initial)
    np.testing.assert_array_equal(one.transitions, fit.transitions)
    steps = [fit.log_likelihood]
    for most in (1, 2, 4, 8):
        steps.append(sequence_core.extend_fit(x, fit, prior, 0.1, most, emission_weight=0.7).log_likelihood)
    assert all(b >= a for a, b in zip(steps, steps[1:], strict=False))  # more iterations never score lower
    assert steps[-1] > steps[0]


def test_chain_prior_is_a_normalised_log_prior() -> None:
    rng = np.random.default_rng(4)
    x, y = _cycle(rng, n=300)
    chain = sequence_core.ChainPrior(x, gmm_core.default_prior(x), np.full((5, 5), 0.2), alpha=0.1)
    log_prior = chain(y)
    np.testing.assert_allclose(np.exp(log_prior).sum(axis=1), 1.0)
    assert np.all(np.argmax(chain.transitions, 1) == (np.arange(5) + 1) % 5)


def test_sequence_worker_is_deterministic_and_reports_the_moves_it_takes() -> None:
    rng = np.random.default_rng(5)
    x, y = _cycle(rng, n=600)
    lat = Latents(sender="v", receiver="g", round=0, z=x)
    outs = []
    for planted in (False, False, True, True):
        w = GMMWorker(GMMConfig(n_components=5, n_sweeps=20), "g", "m", "v", np.random.SeedSequence(6), sequence=True)
        if planted:  # start the worker in the local optimum of _planted (accuracy 0.715) instead of k-means++
            w.labels = _planted(y, np.random.default_rng(7))
        post, _, report = w.update(0, lat)
        outs.append((post.probs, report["moves"]))
        assert accuracy(np.argmax(post.probs, 1), y) == 1.0 and accuracy(report["labels"], y) == 1.0
        if not planted:  # k-means++ finds the cycle: no move raises the likelihood
            assert report["moves"] == []
        else:  # one joint move repairs both faults, with a large gain (measured: +359.5 nats)
            (move,) = report["moves"]
            assert move.startswith("merge 0,4 + split 3 by both (+") and move.endswith(" nats)")
            assert float(move.split("(+")[1].split()[0]) > 300
    for a, b in ((0, 1), (2, 3)):
        np.testing.assert_array_equal(outs[a][0], outs[b][0])
        assert outs[a][1] == outs[b][1]


def _runs_by_style(rng: np.random.Generator, n: int = 900, stay: float = 0.8):
    """Runs of one of 3 classes; classes 0 and 1 are close and each written in two styles far apart.

    Returns the points (n, 2), the classes, and the partition by style (classes 0 and 1 pooled, then split by
    style: the one a Gaussian mixture, and a Gaussian-emission chain, prefer).
    """
    trans = np.full((3, 3), (1.0 - stay) / 2) + (stay - (1.0 - stay) / 2) * np.eye(3)
    y = mm_core_sample(trans, n, rng)
    style = rng.choice([-3.0, 3.0], size=n)
    x = np.stack([1.2 * (y == 1) - 0.6 + 0.4 * rng.normal(size=n), style + 0.5 * rng.normal(size=n)], axis=1)
    x[y == 2] = [8.0, 0.0] + 0.5 * rng.normal(size=(int((y == 2).sum()), 2))
    return x, y, np.where(y == 2, 2, (style > 0).astype(np.int64))


def mm_core_sample(trans: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    states = np.empty(n, dtype=np.int64)
    states[0] = 0
    for t in range(1, n):
        states[t] = rng.choice(trans.shape[0], p=trans[states[t - 1]])
    return states


def test_slow_moves_split_runs_by_class_where_the_plain_chain_prefers_style() -> None:
    rng = np.random.default_rng(7)
    x, y, by_style = _runs_by_style(rng)
    prior = gmm_core.default_prior(x, scale=0.5)
    eye = np.eye(3)
    # the plain chain prefers the style split, so the other moves keep it
    plain = sequence_core.chain_fit(x, eye[y], prior, 0.1, 3).log_likelihood
    assert plain < sequence_core.chain_fit(x, eye[by_style], prior, 0.1, 3).log_likelihood
    kept = sequence_core.search(x, by_style, 3, prior, np.random.default_rng(0), max_moves=4)
    assert accuracy(kept.labels, y) < 0.8
    found = sequence_core.search(x, by_style, 3, prior, np.random.default_rng(0), max_moves=4, slow_candidates=3)
    assert any("slow direction" in m for m in found.moves)
    assert accuracy(found.labels, y) > 0.95


def test_slow_moves_take_nothing_without_sequence_structure() -> None:
    # The same points in a random order: the style split is the mixture's answer and no slow move is taken.
    rng = np.random.default_rng(7)
    x, y, by_style = _runs_by_style(rng)
    order = np.random.default_rng(1).permutation(len(y))
    prior = gmm_core.default_prior(x, scale=0.5)
    found = sequence_core.search(
        x[order], by_style[order], 3, prior, np.random.default_rng(0), max_moves=4, slow_candidates=3
    )
    assert not any("slow direction" in m for m in found.moves)


def test_chain_fits_side_by_side_equal_separate_chain_fits() -> None:
    """chain_fits (one forward-backward per EM iteration for all starts) gives each chain_fit's bits."""
    rng = np.random.default_rng(5)
    x, y = _cycle(rng, n=600)
    prior = gmm_core.mixture_prior(x, 1.0, 0.8, 30.0, "data")
    eye = np.eye(5)
    starts = [eye[y], eye[_planted(y, rng)], eye[rng.integers(0, 5, size=600)]]
    lengths = np.array([200, 150, 250])
    given = [sequence_core.emission_log_likelihood(x, starts[0], prior), None, None]
    fits = sequence_core.chain_fits(x, starts, prior, 0.1, 3, lengths, 0.7, given)
    for w, e, fit in zip(starts, given, fits, strict=True):
        one = sequence_core.chain_fit(x, w, prior, 0.1, 3, lengths, 0.7, e)
        assert fit.log_likelihood == one.log_likelihood
        assert np.array_equal(fit.posterior, one.posterior) and np.array_equal(fit.transitions, one.transitions)
    assert accuracy(y, np.argmax(fits[0].posterior, axis=1)) > 0.95
    logs = sequence_core.chain_log_likelihoods(
        starts[:1], [sequence_core.emission_log_likelihood(x, starts[0], prior)], 0.1, lengths, 0.7
    )
    assert logs[0] == sequence_core.chain_fit(x, starts[0], prior, 0.1, 0, lengths, 0.7).log_likelihood

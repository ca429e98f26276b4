"""Many sequences in the numerical cores (``lengths``, hmmlearn's convention); no Ray.

A boundary between two sequences is no transition: nothing is counted or passed across it,
and every sequence's first point gets the initial distribution.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from actors import gmm_core, mm_core, sequence_core
from actors.config import MMConfig
from actors.mm import MMWorker
from messages import ClassPosteriors


def _brute_force(log_em: np.ndarray, trans: np.ndarray, pi0: np.ndarray, lengths: list[int]):
    """Enumerate every path of every sequence: posteriors, priors, pair counts and log p of all points."""
    n, k = log_em.shape
    em = np.exp(log_em)
    starts = set(np.cumsum([0, *lengths[:-1]]).tolist())
    post, prior, pairs, log_z = np.zeros((n, k)), np.zeros((n, k)), np.zeros((k, k)), 0.0
    joint = {}
    for path in itertools.product(range(k), repeat=n):
        p = 1.0
        for t in range(n):
            p *= (pi0[path[t]] if t in starts else trans[path[t - 1], path[t]]) * em[t, path[t]]
        joint[path] = p
    z = sum(joint.values())
    log_z = np.log(z)
    for path, p in joint.items():
        for t in range(n):
            post[t, path[t]] += p / z
            prior[t, path[t]] += p / em[t, path[t]]
            if t + 1 < n and t + 1 not in starts:
                pairs[path[t], path[t + 1]] += p / z
    return post, prior / prior.sum(axis=1, keepdims=True), pairs, log_z


@pytest.mark.parametrize(
    "lengths,block", [([2, 3], None), ([1, 4, 1], 2), ([3, 1, 1, 2], 3), ([1, 1, 1], None), ([4, 3], 4)]
)
def test_forward_backward_over_sequences_equals_brute_force_and_separate_passes(lengths, block) -> None:
    n, k = sum(lengths), 3
    rng = np.random.default_rng(n + len(lengths))
    log_em = rng.normal(size=(n, k)) * 2
    trans = rng.dirichlet(np.ones(k), size=k)
    pi0 = rng.dirichlet(np.ones(k))
    ls = np.asarray(lengths)
    fb = mm_core.forward_backward(log_em, trans, pi0, block=block, lengths=ls)
    post, prior, pairs, log_z = _brute_force(log_em, trans, pi0, lengths)
    np.testing.assert_allclose(fb.posterior, post, atol=1e-12)
    np.testing.assert_allclose(fb.prior, prior, atol=1e-12)
    np.testing.assert_allclose(fb.pair_counts, pairs, atol=1e-12)
    assert fb.log_likelihood == pytest.approx(log_z, abs=1e-10)
    # ... and equals one pass per sequence, concatenated
    parts = [mm_core.forward_backward(x, trans, pi0) for x in np.split(log_em, np.cumsum(lengths)[:-1])]
    np.testing.assert_allclose(fb.prior, np.vstack([p.prior for p in parts]), atol=1e-12)
    np.testing.assert_allclose(fb.pair_counts, sum(p.pair_counts for p in parts), atol=1e-12)
    assert fb.log_likelihood == pytest.approx(sum(p.log_likelihood for p in parts), abs=1e-10)
    ref = mm_core.forward_backward_reference(log_em, trans, pi0, lengths=ls)
    np.testing.assert_allclose(fb.posterior, ref.posterior, atol=1e-12)


def test_blocked_pass_over_many_long_peaked_sequences_equals_the_reference() -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 60, size=80)
    log_em = rng.normal(size=(int(lengths.sum()), 6)) * 60
    trans = rng.dirichlet(np.ones(6) * 0.3, size=6) * 0.999 + 0.001 / 6
    pi0 = rng.dirichlet(np.ones(6))
    fb = mm_core.forward_backward(log_em, trans, pi0, lengths=lengths)
    ref = mm_core.forward_backward_reference(log_em, trans, pi0, lengths=lengths)
    np.testing.assert_allclose(fb.prior, ref.prior, atol=1e-9)
    np.testing.assert_allclose(fb.posterior, ref.posterior, atol=1e-9)
    np.testing.assert_allclose(fb.pair_counts, ref.pair_counts, atol=1e-7)
    assert fb.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)


def test_one_sequence_given_as_lengths_equals_no_lengths() -> None:
    rng = np.random.default_rng(6)
    log_em = rng.normal(size=(50, 4))
    trans = rng.dirichlet(np.ones(4), size=4)
    a = mm_core.forward_backward(log_em, trans)
    b = mm_core.forward_backward(log_em, trans, lengths=np.array([50]))
    for field in ("prior", "posterior", "pair_counts"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("seed", range(5))
def test_counts_never_include_a_pair_across_a_boundary(seed: int) -> None:
    """Property: with each sequence's classes known, a pair j -> k counted only ever occurs inside one sequence."""
    rng = np.random.default_rng(seed)
    k = 6
    lengths = rng.integers(1, 8, size=int(rng.integers(2, 12)))
    # Every sequence uses its own two classes: any cross-boundary pair would be one no sequence holds.
    labels = np.concatenate([rng.choice([2 * (s % 3), 2 * (s % 3) + 1], size=n) for s, n in enumerate(lengths)])
    onehot = np.eye(k)[labels]
    allowed = np.zeros((k, k), dtype=bool)
    for seq in np.split(labels, np.cumsum(lengths)[:-1]):
        allowed[seq[:-1], seq[1:]] = True
    n_pairs = int((lengths - 1).sum())
    counted = mm_core.expected_counts(onehot, lengths)
    assert counted.sum() == pytest.approx(n_pairs) and not counted[~allowed].any()
    sampled = mm_core.sampled_counts(onehot, 7, rng, lengths)
    assert sampled.sum() == pytest.approx(n_pairs) and not sampled[~allowed].any()
    fb = mm_core.forward_backward(np.log(np.where(onehot > 0, 1.0, 1e-300)), np.full((k, k), 1.0 / k), lengths=lengths)
    assert fb.pair_counts.sum() == pytest.approx(n_pairs)
    assert fb.pair_counts[~allowed].max(initial=0.0) < 1e-12


def test_one_step_message_starts_every_sequence_from_the_initial_distribution() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    trans = np.array([[0.1, 0.9], [0.8, 0.2]])
    initial = np.array([0.3, 0.7])
    msg = mm_core.one_step_message(probs, trans, np.array([1, 3]), initial)
    np.testing.assert_allclose(msg, [initial, initial, trans[1], trans[0]])


def _sequences_from_start_state(rng: np.random.Generator, n_seq: int, length: int, k: int, noise: float):
    """Cycles 0..k-1 of ``length`` points, each sequence started from class 0 or 1 (never from others)."""
    starts = rng.integers(0, 2, size=n_seq)
    truth = np.concatenate([(s + np.arange(length)) % k for s in starts])
    log_em = rng.normal(size=(truth.size, k)) * noise
    log_em[np.arange(truth.size), truth] += 2.0
    probs = np.exp(log_em - log_em.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), log_em, truth, np.full(n_seq, length)


@pytest.mark.parametrize(
    "counts,message", [("pairwise", "forward-backward"), ("expected", "serket"), ("sampled", "forward-backward")]
)
def test_worker_learns_the_initial_distribution_and_checkpoints_it(counts: str, message: str) -> None:
    rng = np.random.default_rng(7)
    probs, log_em, truth, lengths = _sequences_from_start_state(rng, 200, 6, 5, 0.8)
    worker = MMWorker(MMConfig(counts=counts, message=message), "m", "g", np.random.SeedSequence(0))
    post = ClassPosteriors(sender="g", receiver="m", round=0, probs=probs, log_likelihood=log_em, lengths=lengths)
    prior, report = worker.update(0, post)
    initial = report["initial"]
    # from smoothed posteriors (pairwise) nearly all on the two start classes;
    # from the GMM's noisy ones well above uniform (0.4)
    assert initial[:2].sum() > (0.9 if counts == "pairwise" else 0.6) and initial.sum() == pytest.approx(1.0)
    assert prior.lengths is not None and np.array_equal(prior.lengths, lengths)
    # the cycle is learned without the 200 boundary pairs (4 -> 0 or 1 -> anything else)
    trans = report["transitions"]
    assert np.all(np.argmax(trans, axis=1) == (np.arange(5) + 1) % 5)
    if counts == "pairwise":
        assert np.all(trans[np.arange(5), (np.arange(5) + 1) % 5] > 0.85)
    state = worker.get_state()
    again = MMWorker(MMConfig(counts=counts, message=message), "m", "g", np.random.SeedSequence(0))
    again.set_state(state)
    np.testing.assert_array_equal(again.initial, worker.initial)


def test_worker_without_lengths_keeps_a_uniform_start_and_reports_no_initial() -> None:
    rng = np.random.default_rng(8)
    probs, log_em, _, _ = _sequences_from_start_state(rng, 20, 6, 5, 0.8)
    worker = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
    _, report = worker.update(0, ClassPosteriors(sender="g", receiver="m", round=0, probs=probs, log_likelihood=log_em))
    assert "initial" not in report and worker.initial is None


def test_single_point_sequences_carry_no_transition() -> None:
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(3), size=5)
    lengths = np.ones(5, dtype=np.int64)
    assert not mm_core.expected_counts(probs, lengths).any()
    worker = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
    log_em = np.log(probs)
    prior, report = worker.update(
        0, ClassPosteriors(sender="g", receiver="m", round=0, probs=probs, log_likelihood=log_em, lengths=lengths)
    )
    np.testing.assert_allclose(report["transitions"], 1.0 / 3)  # only the smoothing
    # every point is a sequence of its own: its prior is the initial distribution
    np.testing.assert_allclose(prior.probs, np.broadcast_to(report["initial"], (5, 3)), atol=1e-12)


def test_neighbour_context_has_no_neighbour_across_a_boundary() -> None:
    probs = np.eye(3)[[0, 1, 2, 0, 1]]
    pred, succ = sequence_core.neighbour_context(probs, np.array([2, 3]))
    uniform = np.full(3, 1.0 / 3)
    np.testing.assert_array_equal(pred[[0, 2]], [uniform, uniform])
    np.testing.assert_array_equal(succ[[1, 4]], [uniform, uniform])
    np.testing.assert_array_equal(pred[[1, 3, 4]], probs[[0, 2, 3]])
    np.testing.assert_array_equal(succ[[0, 2, 3]], probs[[1, 3, 4]])


def test_chain_fit_over_sequences_equals_the_sum_of_its_parts_log_likelihood() -> None:
    """With the emissions held fixed (0 EM iterations) the chain scores sequences independently."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(40, 2))
    weights = np.eye(3)[rng.integers(0, 3, size=40)]
    prior = gmm_core.mixture_prior(x, 0.01, 0.8, 30.0, "data")
    lengths = np.array([15, 25])
    fit = sequence_core.chain_fit(x, weights, prior, 0.1, 0, lengths)
    log_em = sequence_core.emission_log_likelihood(x, weights, prior)
    trans = mm_core.transition_matrix(mm_core.expected_counts(weights, lengths), 0.1)
    initial = mm_core.initial_distribution(weights, lengths, 0.1)
    parts = [mm_core.forward_backward(e, trans, initial) for e in np.split(log_em, [15])]
    assert fit.log_likelihood == pytest.approx(sum(p.log_likelihood for p in parts), rel=1e-12)

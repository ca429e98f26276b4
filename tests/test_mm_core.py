"""The Markov model's core against brute-force enumeration and a log-space reference; no Ray."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from actors import mm_core
from actors.config import MMConfig
from actors.mm import MMWorker
from messages import ClassPosteriors


def _brute_force(log_em: np.ndarray, trans: np.ndarray, pi0: np.ndarray):
    n, k = log_em.shape
    em = np.exp(log_em)
    joint = {}
    for seq in itertools.product(range(k), repeat=n):
        p = pi0[seq[0]] * em[0, seq[0]]
        for t in range(1, n):
            p *= trans[seq[t - 1], seq[t]] * em[t, seq[t]]
        joint[seq] = p
    z = sum(joint.values())
    post = np.zeros((n, k))
    prior = np.zeros((n, k))
    pairs = np.zeros((k, k))
    for seq, p in joint.items():
        for t in range(n):
            post[t, seq[t]] += p / z
            prior[t, seq[t]] += p / em[t, seq[t]]  # drop the point's own evidence
        for t in range(n - 1):
            pairs[seq[t], seq[t + 1]] += p / z
    prior /= prior.sum(axis=1, keepdims=True)
    return post, prior, pairs, np.log(z)


@pytest.mark.parametrize("n,k,block", [(1, 2, None), (2, 3, None), (5, 2, None), (6, 3, 2), (7, 3, 4)])
def test_forward_backward_equals_brute_force(n: int, k: int, block) -> None:
    rng = np.random.default_rng(n * 10 + k)
    log_em = rng.normal(size=(n, k)) * 2
    trans = rng.dirichlet(np.ones(k), size=k)
    pi0 = rng.dirichlet(np.ones(k))
    fb = mm_core.forward_backward(log_em, trans, pi0, block=block)
    post, prior, pairs, log_z = _brute_force(log_em, trans, pi0)
    np.testing.assert_allclose(fb.posterior, post, atol=1e-12)
    np.testing.assert_allclose(fb.prior, prior, atol=1e-12)
    np.testing.assert_allclose(fb.pair_counts, pairs, atol=1e-12)
    assert fb.log_likelihood == pytest.approx(log_z, abs=1e-10)


def test_blocked_forward_backward_equals_log_space_reference_on_long_peaked_sequences() -> None:
    rng = np.random.default_rng(1)
    log_em = rng.normal(size=(2500, 10)) * 80  # likelihood ratios far beyond float range
    trans = rng.dirichlet(np.ones(10) * 0.3, size=10) * 0.999 + 0.0001
    trans /= trans.sum(axis=1, keepdims=True)
    fb = mm_core.forward_backward(log_em, trans)
    ref = mm_core.forward_backward_reference(log_em, trans)
    np.testing.assert_allclose(fb.prior, ref.prior, atol=1e-9)
    np.testing.assert_allclose(fb.posterior, ref.posterior, atol=1e-9)
    np.testing.assert_allclose(fb.pair_counts, ref.pair_counts, atol=1e-7)
    assert fb.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(fb.prior.sum(axis=1), 1.0)


def test_sampled_counts_are_unbiased_for_expected_counts() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), size=400)
    sampled = mm_core.sampled_counts(probs, 3000, rng)
    np.testing.assert_allclose(sampled, mm_core.expected_counts(probs), atol=1.0)
    assert sampled.sum() == pytest.approx(399)


def test_transition_matrix_and_one_step_message() -> None:
    counts = np.array([[3.0, 1.0], [0.0, 0.0]])
    t = mm_core.transition_matrix(counts, 1.0)
    np.testing.assert_allclose(t, [[4 / 6, 2 / 6], [0.5, 0.5]])
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    msg = mm_core.one_step_message(probs, t)
    np.testing.assert_allclose(msg, [[0.5, 0.5], t[0], t[1]])


def _cyclic_posteriors(n: int, k: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    truth = np.arange(n) % k
    log_em = rng.normal(size=(n, k)) * noise
    log_em[np.arange(n), truth] += 2.0
    probs = np.exp(log_em - log_em.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), log_em


def test_worker_learns_a_cycle_and_its_message_fixes_noisy_points() -> None:
    rng = np.random.default_rng(3)
    probs, log_em = _cyclic_posteriors(2000, 5, 1.5, rng)
    truth = np.arange(2000) % 5
    worker = MMWorker(MMConfig(), "m", "g", np.random.SeedSequence(0))
    post = ClassPosteriors(sender="g", receiver="m", round=0, probs=probs, log_likelihood=log_em)
    prior, report = worker.update(0, post)
    trans = report["transitions"]
    assert np.all(trans[np.arange(5), (np.arange(5) + 1) % 5] > 0.9)
    emission_only = (np.argmax(log_em, 1) == truth).mean()
    with_message = (np.argmax(prior.probs * probs, 1) == truth).mean()
    assert with_message > 0.99 > emission_only + 0.05
    np.testing.assert_allclose(prior.probs.sum(axis=1), 1.0)


@pytest.mark.parametrize("counts", ["expected", "sampled", "pairwise"])
@pytest.mark.parametrize("message", ["serket", "forward-backward"])
def test_every_mode_gives_valid_messages(counts: str, message: str) -> None:
    rng = np.random.default_rng(4)
    probs, log_em = _cyclic_posteriors(300, 4, 1.0, rng)
    worker = MMWorker(MMConfig(counts=counts, message=message), "m", "g", np.random.SeedSequence(1))
    prior, report = worker.update(
        0, ClassPosteriors(sender="g", receiver="m", round=0, probs=probs, log_likelihood=log_em)
    )
    np.testing.assert_allclose(report["transitions"].sum(axis=1), 1.0)
    assert prior.probs.shape == (300, 4)
    # the cycle dominates every row whatever the counting
    assert np.all(np.argmax(report["transitions"], 1) == (np.arange(4) + 1) % 4)


def _polya_log_prob(labels: list[int], k: int, alpha: float, context: list[object]) -> float:
    """log p(labels) drawn one by one from Polya urns (one urn per context, Dirichlet(alpha) each): the
    sequential form of the Dirichlet-multinomial, computed independently of the closed form."""
    urns: dict[object, np.ndarray] = {}
    total = 0.0
    for lab, ctx in zip(labels, context, strict=True):
        urn = urns.setdefault(ctx, np.zeros(k))
        total += np.log((urn[lab] + alpha) / (urn.sum() + k * alpha))
        urn[lab] += 1
    return total


@pytest.mark.parametrize("lengths", [None, [5, 1, 9, 3]])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_sequence_evidence_equals_sequential_urn_probabilities(lengths, alpha: float) -> None:
    """The Bayes factor equals the chain's urn draws (the first point of each sequence from the initial urn, the
    others from their predecessor's urn) less one urn for every point, never linking across a boundary."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=18)
    starts = mm_core.sequence_starts(None if lengths is None else np.array(lengths), 18)
    context = ["first" if starts[t] else int(labels[t - 1]) for t in range(18)]
    want = _polya_log_prob(labels.tolist(), 4, alpha, context) - _polya_log_prob(labels.tolist(), 4, alpha, [0] * 18)
    got = mm_core.sequence_evidence(labels, 4, None if lengths is None else np.array(lengths), alpha)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-10)


def test_sequence_evidence_separates_order_from_none() -> None:
    """A chain with a third of its labels replaced at random still shows (> 100 nats); the same labels shuffled do
    not (< 0); and cutting a cycle into sequences at every step leaves no pair to count (no evidence for it)."""
    rng = np.random.default_rng(0)
    cycle = np.arange(3000) % 10
    noisy = np.where(rng.random(3000) < 1 / 3, rng.integers(0, 10, 3000), cycle)
    assert mm_core.sequence_evidence(noisy, 10) > 100.0
    assert mm_core.sequence_evidence(rng.permutation(noisy), 10) < 0.0
    singles = np.ones(3000, dtype=np.int64)
    assert mm_core.sequence_evidence(cycle, 10, singles) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_many_chains_at_once_give_each_chains_own_pass_bit_for_bit(with_lengths: bool) -> None:
    """forward_backward_many / forward_log_likelihood_many over C chains equal C single passes exactly."""
    rng = np.random.default_rng(7)
    n, k, c = 1234, 6, 4
    log_em = rng.normal(size=(c, n, k)) * rng.uniform(1, 40, size=(c, 1, 1))
    trans = rng.dirichlet(np.ones(k), size=(c, k)) + 0.01
    trans /= trans.sum(axis=2, keepdims=True)
    lengths = np.array([1, 300, 2, 500, 431]) if with_lengths else None
    initial = [None, rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k)), None]
    many = mm_core.forward_backward_many(log_em, trans, initial, lengths=lengths)
    forward = mm_core.forward_log_likelihood_many(log_em, trans, initial, lengths=lengths)
    for i in range(c):
        one = mm_core.forward_backward(log_em[i], trans[i], initial[i], lengths=lengths)
        for field in ("prior", "posterior", "pair_counts"):
            assert np.array_equal(getattr(many[i], field), getattr(one, field)), field
        assert many[i].log_likelihood == one.log_likelihood == forward[i]
    # and each is right, not only consistent: against the plain log-space recursion
    ref = mm_core.forward_backward_reference(log_em[1], trans[1], initial[1], lengths=lengths)
    np.testing.assert_allclose(many[1].posterior, ref.posterior, atol=1e-9)
    assert many[1].log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)

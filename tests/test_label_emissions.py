"""The move search's shortcuts equal the plain computations bit for bit (actors/label_emissions.py,
mm_core.forward_log_likelihood, sequence_core.chain_log_likelihood); no Ray."""

from __future__ import annotations

import numpy as np

from actors import gmm_core, mm_core, sequence_core
from actors.label_emissions import LabelEmissions
from actors.sequence_proposals import mixture_proposals, propose_moves


def _data(seed: int = 0, n: int = 900, k: int = 6, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    return rng.normal(size=(k, d))[y] * 3.0 + rng.normal(size=(n, d)), y


def test_emissions_of_moved_labels_equal_a_fresh_computation() -> None:
    x, y = _data()
    prior = gmm_core.mixture_prior(x, 1.0, 0.8, 30.0, "data")
    rng = np.random.default_rng(1)
    cache = LabelEmissions(x, y, 6, prior)
    eye = np.eye(6)
    assert np.array_equal(cache.base, sequence_core.emission_log_likelihood(x, eye[y], prior))
    moves = propose_moves(y, eye[y], rng, 4) + mixture_proposals(x, y, 6, prior, rng, 3)
    assert len(moves) >= 8
    for move in moves:
        assert np.array_equal(cache(move.labels), sequence_core.emission_log_likelihood(x, eye[move.labels], prior))
    assert np.array_equal(cache(y.copy()), cache.base)
    assert cache.touched(np.where(y == 2, 5, y)).tolist() == [2, 5]


def test_forward_log_likelihood_is_forward_backwards_bit_for_bit() -> None:
    x, y = _data(2)
    prior = gmm_core.default_prior(x)
    log_em = sequence_core.emission_log_likelihood(x, np.eye(6)[y], prior)
    trans = mm_core.transition_matrix(mm_core.expected_counts(np.eye(6)[y]), 0.1)
    lengths = np.array([400, 1, 299, 200])
    initial = mm_core.initial_distribution(np.eye(6)[y], lengths, 0.1)
    for kwargs in ({}, {"lengths": lengths, "initial": initial}, {"block": 7}):
        full = mm_core.forward_backward(log_em, trans, **kwargs)
        assert mm_core.forward_log_likelihood(log_em, trans, **kwargs) == full.log_likelihood
    for weight, seqs in ((1.0, None), (0.7, lengths)):
        w = np.eye(6)[y]
        fit = sequence_core.chain_fit(x, w, prior, 0.1, 0, seqs, weight)
        assert sequence_core.chain_log_likelihood(w, log_em, 0.1, seqs, weight) == fit.log_likelihood

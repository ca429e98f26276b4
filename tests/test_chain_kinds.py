"""The chain kinds' generators: each order is a selection of the source points with the structure it claims."""

from __future__ import annotations

import numpy as np
import pytest

from messages.errors import DataError
from orchestrator.chain_kinds import (
    KINDS,
    cycle_matrix,
    independent_sequence,
    kind_sequence,
    noisy_cycle_sequence,
    self_transition_matrix,
    self_transition_sequence,
    short_sequences,
)
from orchestrator.sequences import empirical_transitions


def _source(per_class: int, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(n_classes) * 3 + 2, per_class)  # label values 2, 5, 8, ...: not state numbers
    data = np.arange(len(labels))[:, None] * np.ones((1, 2))  # each row names its source index
    return data, labels


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum(axis=1).mean())


def _check_selection(seq, data: np.ndarray, labels: np.ndarray) -> None:
    np.testing.assert_array_equal(seq.data[:, 0], seq.indices)
    np.testing.assert_array_equal(seq.labels, labels[seq.indices])
    np.testing.assert_array_equal(seq.classes[seq.states], seq.labels)
    np.testing.assert_allclose(seq.transitions.sum(axis=1), 1.0)


def test_self_transition_chain_has_runs_of_the_stay_probability() -> None:
    data, labels = _source(per_class=2000)
    seq = self_transition_sequence(data, labels, 10_000, np.random.default_rng(0), stay=0.6)
    _check_selection(seq, data, labels)
    np.testing.assert_allclose(seq.transitions, self_transition_matrix(10, 0.6))
    emp = seq.empirical_transitions()
    assert abs(np.diag(emp).mean() - 0.6) < 0.02 and _tv(emp, seq.transitions) < 0.05
    assert seq.n_reused == 0 and len(np.unique(seq.indices)) == 10_000


def test_noisy_cycle_uses_every_point_once_and_keeps_the_cycle_elsewhere() -> None:
    data, labels = _source(per_class=300)
    seq = noisy_cycle_sequence(data, labels, np.random.default_rng(1), fraction=0.2)
    _check_selection(seq, data, labels)
    np.testing.assert_array_equal(np.sort(seq.indices), np.arange(3000))  # a permutation
    on_cycle = (seq.states == np.arange(3000) % 10).mean()
    assert 0.8 <= on_cycle <= 0.83  # 20 % shuffled, a tenth of those land on their own class
    np.testing.assert_allclose(seq.transitions, empirical_transitions(seq.states, 10))
    assert _tv(seq.transitions, cycle_matrix(10)) > 0.2
    clean = noisy_cycle_sequence(data, labels, np.random.default_rng(1), fraction=0.0)
    np.testing.assert_array_equal(clean.states, np.arange(3000) % 10)


def test_independent_draws_are_a_permutation_with_frequency_rows() -> None:
    data, labels = _source(per_class=100)
    seq = independent_sequence(data, labels, np.random.default_rng(2))
    _check_selection(seq, data, labels)
    np.testing.assert_array_equal(np.sort(seq.indices), np.arange(1000))
    np.testing.assert_allclose(seq.transitions, np.full((10, 10), 0.1))


def test_short_sequences_follow_the_cycle_from_random_starts_with_lengths() -> None:
    data, labels = _source(per_class=400)
    seq = short_sequences(data, labels, 300, 10, np.random.default_rng(3))
    _check_selection(seq, data, labels)
    np.testing.assert_array_equal(seq.lengths, np.full(300, 10))
    states = seq.states.reshape(300, 10)
    np.testing.assert_array_equal(np.diff(states, axis=1) % 10, 1)  # each follows the cycle
    starts = np.bincount(states[:, 0], minlength=10)
    assert starts.min() >= 15  # random starts, about 30 per class
    # within the sequences the transitions are exactly the cycle; across boundaries they are not
    np.testing.assert_array_equal(seq.empirical_transitions(), cycle_matrix(10))
    assert _tv(empirical_transitions(seq.states, 10), cycle_matrix(10)) > 0.05


def test_kind_sequence_covers_every_kind_deterministically_and_names_bad_kinds() -> None:
    data, labels = _source(per_class=300)
    for kind in KINDS:
        a = kind_sequence(kind, data, labels, np.random.default_rng(4))
        b = kind_sequence(kind, data, labels, np.random.default_rng(4))
        np.testing.assert_array_equal(a.indices, b.indices)
        assert len(a.indices) == 3000
    with pytest.raises(DataError, match="chain kind should be one of"):
        kind_sequence("zigzag", data, labels, np.random.default_rng(0))
